// The series selectors of PromQL expressions, parsed with Prometheus's own grammar (@prometheus-io/lezer-promql).
// stdin: a JSON list of expressions; stdout: a JSON list of {error, selectors: [{metric, matchers: [[label, op, value]]}]}
// where metric is the selector's name (null when it has none: the name is then a __name__ matcher).
const { parser } = require("@prometheus-io/lezer-promql");
const exprs = JSON.parse(require("fs").readFileSync(0, "utf8"));
const text = (e, n) => e.slice(n.from, n.to);
const out = exprs.map((e) => {
  let error = null;
  const selectors = [];
  parser.parse(e).iterate({
    enter: (ref) => {
      if (error === null && ref.type.isError) error = `syntax error at ${ref.from}: ${JSON.stringify(e.slice(ref.from - 20, ref.from + 20))}`;
      if (ref.name !== "VectorSelector") return;
      const node = ref.node;
      const id = node.getChild("Identifier");
      const matchers = [];
      const list = node.getChild("LabelMatchers");
      if (list) {
        for (const m of list.getChildren("UnquotedLabelMatcher")) {
          const value = JSON.parse(text(e, m.getChild("StringLiteral")).replace(/^'(.*)'$/s, '"$1"'));
          matchers.push([text(e, m.getChild("LabelName")), text(e, m.getChild("MatchOp")), value]);
        }
      }
      selectors.push({ metric: id ? text(e, id) : null, matchers });
    },
  });
  return { error, selectors };
});
process.stdout.write(JSON.stringify(out));
