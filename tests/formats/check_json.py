#!/usr/bin/env python3
"""Validate a kspm JSON document against schemas/kspm-output.schema.json.

Usage: check_json.py DEFINITION FILE

  DEFINITION  an entry of the schema's $defs naming the document: agentScan, agentChecks,
              clusterScan, ctlSummary, ctlFindings, ctlNodes, ctlHistory, ctlDrift, ctlExport,
              ctlScanCluster, ctlTokensCreate (any other $defs entry works too, e.g. result)
  FILE        the JSON document, or - for standard input

Prints one line per error, "JSONPATH: message", and exits 1 if there is any; prints "ok" and exits
0 otherwise. Exit 2: usage error, unknown definition, unreadable schema or input.
The schema can be overridden with $KSPM_OUTPUT_SCHEMA.

Needs python3-jsonschema (Debian 12 ships 4.10; newer versions work too).
"""

import json
import os
import re
import sys

import jsonschema

SCHEMA_PATH = os.environ.get("KSPM_OUTPUT_SCHEMA") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "schemas", "kspm-output.schema.json")


def json_path(parts):
    out = "$"
    for p in parts:
        if isinstance(p, int):
            out += f"[{p}]"
        elif re.match(r"^[A-Za-z_$][\w$]*$", p):
            out += f".{p}"
        else:
            out += f"[{json.dumps(p)}]"
    return out


def messages(err):
    """(path, message) pairs that say what is wrong: an anyOf failure is replaced by its causes."""
    if err.context and err.validator in ("anyOf", "oneOf"):
        # Of the alternatives, report those that got furthest into the document; alternatives
        # that all fail at the same place are said in one line.
        deepest = max(len(e.absolute_path) for e in err.context)
        subs = [e for e in err.context if len(e.absolute_path) == deepest]
        if deepest == len(err.absolute_path):
            yield tuple(err.absolute_path), " or ".join(dict.fromkeys(message(e) for e in subs))
            return
        for sub in subs:
            yield from messages(sub)
    else:
        yield tuple(err.absolute_path), message(err)


def json_type(value):
    for name, kind in (("null", type(None)), ("boolean", bool), ("integer", int), ("number", float),
                       ("string", str), ("array", list), ("object", dict)):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def message(err):
    if err.validator == "type":
        return f"must be of type {err.validator_value}, not {json_type(err.instance)}"
    msg = err.message
    if len(msg) > 200:  # the message quotes the whole instance: name the keyword instead
        msg = f"fails {err.validator!r}: {json.dumps(err.validator_value)}"[:200]
    return msg


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    name, path = argv[1], argv[2]
    try:
        with open(SCHEMA_PATH, encoding="utf-8") as f:
            schema = json.load(f)
    except (OSError, ValueError) as e:
        print(f"{SCHEMA_PATH}: cannot read the schema: {e}", file=sys.stderr)
        return 2
    defs = schema.get("$defs", {})
    if name not in defs:
        print(f"unknown definition '{name}' (one of: {', '.join(sorted(defs))})", file=sys.stderr)
        return 2
    try:
        if path == "-":
            doc = json.load(sys.stdin)
        else:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        print(f"{path}: cannot read as JSON: {e}", file=sys.stderr)
        return 2

    # The whole schema with the chosen definition as its root: references keep resolving.
    root = dict(schema)
    root["$ref"] = f"#/$defs/{name}"
    cls = jsonschema.validators.validator_for(root, default=jsonschema.Draft202012Validator)
    cls.check_schema(root)
    validator = cls(root)
    errors = set()
    for err in validator.iter_errors(doc):
        errors.update(messages(err))
    def order(e):
        return ([(0, p, "") if isinstance(p, int) else (1, 0, p) for p in e[0]], e[1])

    for parts, msg in sorted(errors, key=order):
        print(f"{json_path(list(parts))}: {msg}")
    if errors:
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
