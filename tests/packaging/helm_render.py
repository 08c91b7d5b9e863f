"""Lints and renders the kspm chart without Helm.

Usage: python3 helm_render.py CHART NAMESPACE OUT [--set KEY=VALUE ...]
Lint: balanced {{ }} and blocks, every include defined, every .Values path present.
Render: the subset of Go templates and Helm functions the chart uses (if/else/with/define/end,
include, toYaml, nindent, indent, quote, default, printf, replace, eq, fail); anything else is an
error, so that a template construct this renderer does not know fails loudly instead of passing.
--set as Helm's for plain dotted keys (the value read as YAML: true, 24, static).
"""
import json
import os
import re
import sys
import yaml


def set_values(values, overrides):
    """Applies ["--set", "K=V", ...] to `values` as Helm does for plain dotted keys."""
    while overrides:
        if overrides[0] != "--set" or len(overrides) < 2 or "=" not in overrides[1]:
            raise ValueError(f"bad arguments {overrides}")
        key, value = overrides[1].split("=", 1)
        *parents, leaf = key.split(".")
        node = values
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = yaml.safe_load(value)
        overrides = overrides[2:]


def lint(chart, values):
    """Problems of Chart.yaml and values.yaml: the fields the chart and its users rely on."""
    errors = []
    for k in ("apiVersion", "name", "version", "appVersion"):
        if k not in chart:
            errors.append(f"Chart.yaml: no {k}")
    if chart.get("apiVersion") != "v2":
        errors.append("Chart.yaml: apiVersion is not v2")
    for k in ("clusterName",):
        if k not in values:
            errors.append(f"values.yaml: no {k}")
    for path in (("agent", "image", "repository"), ("agent", "image", "tag"), ("agent", "interval"),
                 ("agent", "resources"), ("agent", "tolerations"), ("agent", "nodeSelector"),
                 ("collector", "image", "repository"), ("collector", "resources"),
                 ("collector", "storage", "size"), ("enrollment", "mode"),
                 ("enrollment", "certificateHours"), ("tls", "caKeySecret")):
        v = values
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
            if v is None and k != "tag":
                errors.append(f"values.yaml: no {'.'.join(path)}")
                break
    return errors


ACTION = re.compile(r"\{\{(-\s)?(.*?)(\s-)?\}\}", re.S)


class TemplateError(Exception):
    pass


def lex(text, name):
    if text.count("{{") != text.count("}}"):
        raise TemplateError(f"{name}: {text.count('{{')} '{{{{' but {text.count('}}')} '}}}}'")
    tokens, pos = [], 0
    for m in ACTION.finditer(text):
        tokens.append(["text", text[pos:m.start()]])
        tokens.append(["action", m.group(2).strip(), bool(m.group(1)), bool(m.group(3))])
        pos = m.end()
    tokens.append(["text", text[pos:]])
    for i, t in enumerate(tokens):
        if t[0] != "action":
            continue
        if t[2] and i > 0:
            tokens[i - 1][1] = tokens[i - 1][1].rstrip(" \t\r\n")
        if t[3] and i + 1 < len(tokens):
            tokens[i + 1][1] = tokens[i + 1][1].lstrip(" \t\r\n")
    return tokens


def parse(tokens, name):
    """Returns (nodes, defines). Nodes: ("text", s) ("expr", p) ("if"|"with", p, body, else)."""
    defines = {}
    stack = [("root", [], None)]
    for t in tokens:
        if t[0] == "text":
            if t[1]:
                stack[-1][1].append(("text", t[1]))
            continue
        body = t[1]
        if body.startswith("/*"):
            if not body.endswith("*/"):
                raise TemplateError(f"{name}: unterminated comment")
            continue
        word = body.split(None, 1)[0] if body else ""
        rest = body[len(word):].strip()
        if word in ("if", "with", "define"):
            stack.append((word, [], rest))
        elif word == "range":
            raise TemplateError(f"{name}: range is not supported by this renderer")
        elif word == "else":
            if rest or stack[-1][0] not in ("if", "with"):
                raise TemplateError(f"{name}: unsupported else")
            kind, nodes, arg = stack.pop()
            stack.append((kind + "-else", [], (arg, nodes)))
        elif word == "end":
            if len(stack) == 1:
                raise TemplateError(f"{name}: unbalanced end")
            kind, nodes, arg = stack.pop()
            if kind == "define":
                defines[json.loads(arg)] = nodes
            elif kind.endswith("-else"):
                stack[-1][1].append((kind[:-5], arg[0], arg[1], nodes))
            else:
                stack[-1][1].append((kind, arg, nodes, []))
        else:
            stack[-1][1].append(("expr", body))
    if len(stack) != 1:
        raise TemplateError(f"{name}: {len(stack) - 1} block(s) without end")
    return stack[0][1], defines


TOKEN = re.compile(r'\s*("(?:[^"\\]|\\.)*"|\$|\.[A-Za-z0-9_.]*|-?\d+|[A-Za-z_][A-Za-z0-9_]*)')


def split_pipeline(p):
    parts, cur, quoted = [], "", False
    for ch in p:
        if ch == '"':
            quoted = not quoted
        if ch == "|" and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [x.strip() for x in parts]


def tokens_of(cmd):
    out, pos = [], 0
    while pos < len(cmd.rstrip()):
        m = TOKEN.match(cmd, pos)
        if not m:
            raise TemplateError(f"cannot parse {cmd!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def gostr(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def truthy(v):
    return v not in (None, False, 0, "", [], {})


class Renderer:
    def __init__(self, root, defines):
        self.root = root
        self.defines = defines

    def value(self, tok, dot):
        if tok.startswith('"'):
            return json.loads(tok)
        if re.fullmatch(r"-?\d+", tok):
            return int(tok)
        if tok == "$":
            return self.root
        if tok.startswith("."):
            v = dot
            path = [p for p in tok.split(".") if p]
            for i, k in enumerate(path):
                if not isinstance(v, dict) or k not in v:
                    raise TemplateError(f"{tok}: no {'.'.join(path[:i + 1])}")
                v = v[k]
            return v
        raise TemplateError(f"unknown function or value {tok}")

    def call(self, fn, args):
        if fn == "include":
            name, ctx = args
            if name not in self.defines:
                raise TemplateError(f"include of undefined template {name!r}")
            return self.render(self.defines[name], ctx)
        if fn == "toYaml":
            return yaml.safe_dump(args[0], default_flow_style=False, sort_keys=True).rstrip("\n")
        if fn == "nindent":
            return "\n" + self.call("indent", args)
        if fn == "indent":
            pad = " " * args[0]
            return "\n".join(pad + line for line in gostr(args[1]).split("\n"))
        if fn == "quote":
            return json.dumps(gostr(args[0]))
        if fn == "default":
            return args[1] if truthy(args[1]) else args[0]
        if fn == "printf":
            return args[0].replace("%v", "%s") % tuple(gostr(a) for a in args[1:])
        if fn == "replace":
            return gostr(args[2]).replace(args[0], args[1])
        if fn == "eq":
            return args[0] == args[1]
        if fn == "fail":
            raise TemplateError(f"fail: {args[0]}")
        raise TemplateError(f"function {fn} is not supported by this renderer")

    def pipeline(self, p, dot):
        result, first = None, True
        for cmd in split_pipeline(p):
            toks = tokens_of(cmd)
            if not toks:
                raise TemplateError(f"empty command in {p!r}")
            head = toks[0]
            if head.startswith(('"', ".", "$")) or re.fullmatch(r"-?\d+", head):
                if len(toks) != 1 or not first:
                    raise TemplateError(f"cannot parse {cmd!r}")
                result = self.value(head, dot)
            else:
                args = [self.value(t, dot) for t in toks[1:]]
                if not first:
                    args.append(result)
                result = self.call(head, args)
            first = False
        return result

    def render(self, nodes, dot):
        out = []
        for n in nodes:
            if n[0] == "text":
                out.append(n[1])
            elif n[0] == "expr":
                out.append(gostr(self.pipeline(n[1], dot)))
            else:
                v = self.pipeline(n[1], dot)
                if truthy(v):
                    out.append(self.render(n[2], v if n[0] == "with" else dot))
                else:
                    out.append(self.render(n[3], dot))
        return "".join(out)


def render_chart(chart_dir, namespace, overrides=()):
    """(the rendered manifests, problems) of the chart at `chart_dir`, as `helm template` with
    --namespace `namespace` --set namespace.create=true and `overrides` would give them."""
    with open(os.path.join(chart_dir, "Chart.yaml")) as f:
        chart = yaml.safe_load(f)
    with open(os.path.join(chart_dir, "values.yaml")) as f:
        values = yaml.safe_load(f)
    set_values(values, list(overrides))
    errors = lint(chart, values)
    tdir = os.path.join(chart_dir, "templates")
    parsed, defines = {}, {}
    for f in sorted(os.listdir(tdir)):
        if f == "NOTES.txt" or not f.endswith((".yaml", ".tpl", ".txt")):
            continue
        try:
            with open(os.path.join(tdir, f)) as t:
                nodes, d = parse(lex(t.read(), f), f)
        except TemplateError as e:
            errors.append(str(e))
            continue
        defines.update(d)
        parsed[f] = nodes

    root = {
        "Values": values,
        "Release": {"Name": "kspm", "Namespace": namespace, "Service": "Helm"},
        "Chart": {"Name": chart.get("name"), "Version": chart.get("version"),
                  "AppVersion": chart.get("appVersion")},
    }
    renderer = Renderer(root, defines)
    docs = []
    for f, nodes in parsed.items():
        if f.startswith("_"):
            continue
        for namespace_create in (False, True):
            values.setdefault("namespace", {})["create"] = namespace_create
            try:
                text = renderer.render(nodes, root)
                list(yaml.safe_load_all(text))  # valid YAML, or an error
            except (TemplateError, yaml.YAMLError) as e:
                errors.append(f"{f}: {e}")
                break
            # The namespace is rendered once (create=true); every other file does not depend on
            # it.
            if (f == "namespace.yaml") == namespace_create:
                docs.append(f"# Source: {f}\n" + text.strip("\n"))
    try:
        with open(os.path.join(tdir, "NOTES.txt")) as t:
            nodes, _ = parse(lex(t.read(), "NOTES.txt"), "NOTES.txt")
        renderer.render(nodes, root)
    except (OSError, TemplateError) as e:
        errors.append(f"NOTES.txt: {e}")
    return "\n---\n".join(docs) + "\n", errors


def main(argv):
    if len(argv) < 3:
        sys.exit("usage: python3 helm_render.py CHART NAMESPACE OUT [--set KEY=VALUE ...]")
    chart_dir, namespace, out_path = argv[:3]
    try:
        text, errors = render_chart(chart_dir, namespace, argv[3:])
    except ValueError as e:
        sys.exit(f"helm: {e}")
    with open(out_path, "w") as f:
        f.write(text)
    for e in errors:
        print(f"helm: {e}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
