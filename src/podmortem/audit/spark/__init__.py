"""``audit analyze --engine spark``: the same rules over the same normalized events on Spark
(an optional extra, ``pip install podmortem[spark]``). See ``docs/audit-spark.md``.

- :mod:`.session`: the SparkSession and the settings that change results;
- :mod:`.read`: podmortem's readers in the Spark workers, local paths and object-store URLs;
- :mod:`.engine`: deduplication, the rule pass in Spark SQL, findings by the shared code.
"""
