// Parses and analyses KQL with Microsoft's own Kusto language service (Kusto.Language,
// published on npm as @kusto/language-service-next) against declared table schemas.
// stdin: {"tables": {"Name": "(col:type, ...)"}, "queries": {"id": "text"}}
// stdout: {"id": [{"severity", "code", "message", "start", "length"}], ...}
"use strict";
require("@kusto/language-service-next/bridge.min.js");
require("@kusto/language-service-next/Kusto.Language.Bridge.min.js");

const K = globalThis.Kusto.Language;
let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => { input += chunk; });
process.stdin.on("end", () => {
  const doc = JSON.parse(input);
  const tables = Object.entries(doc.tables).map(([name, schema]) =>
    K.Symbols.TableSymbol.From(schema).WithName(name));
  const db = new K.Symbols.DatabaseSymbol.ctor("workspace", tables);
  const globals = K.GlobalState.Default.WithDatabase(db);
  const out = {};
  for (const [id, text] of Object.entries(doc.queries)) {
    const diags = K.KustoCode.ParseAndAnalyze(text, globals).GetDiagnostics();
    const list = [];
    for (let i = 0; i < diags.Count; i++) {
      const d = diags.getItem(i);
      list.push({ severity: d.Severity, code: d.Code, message: d.Message, start: d.Start, length: d.Length });
    }
    out[id] = list;
  }
  process.stdout.write(JSON.stringify(out));
});
