// PromQL syntax check with Prometheus's own grammar (@prometheus-io/lezer-promql, the one its web UI uses).
// stdin: a JSON list of expressions; stdout: a JSON list with null (parses) or the first syntax error of each.
const { parser } = require("@prometheus-io/lezer-promql");
const exprs = JSON.parse(require("fs").readFileSync(0, "utf8"));
const out = exprs.map((e) => {
  let err = null;
  parser.parse(e).iterate({
    enter: (n) => {
      if (err === null && n.type.isError) err = `syntax error at ${n.from}: ${JSON.stringify(e.slice(n.from - 20, n.from + 20))}`;
    },
  });
  return err;
});
process.stdout.write(JSON.stringify(out));
