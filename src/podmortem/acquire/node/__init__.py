"""Node-side collectors: read a container from the host's ``/proc`` (and the overlay
upperdir), never from inside it. Nothing here writes to the target or executes anything."""
