#!/usr/bin/env python3
"""Validate a SARIF file the way its consumers will.

Usage: check_sarif.py [-q] FILE

  (a) against the OASIS SARIF 2.1.0 JSON schema (sarif-schema-2.1.0.json, next to this script),
  (b) against GitHub code scanning's documented upload requirements.

Rules in (b) come from GitHub's "SARIF support for code scanning" page
(docs.github.com/en/code-security/reference/code-scanning/sarif-files/sarif-support, source
github/docs content/code-security/reference/code-scanning/sarif-files/sarif-support.md, limits from
data/reusables/code-scanning/sarif-limits.md; see SOURCES.md). Each check names the section it
implements.

Prints one line per violation, "PATH: [check] message", and exits 1 if there is any. Lines starting
with "warning:" are documented recommendations or soft (truncation) limits; they do not fail the file
(-q hides them). Prints "ok" and exits 0 when there is no violation. Exit 2: unreadable input.

Needs python3-jsonschema (Debian 12 ships 4.10; newer versions work too).
"""

import gzip
import json
import math
import os
import re
import sys

import jsonschema

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sarif-schema-2.1.0.json")

# "File compatibility" section and data/reusables/code-scanning/sarif-limits.md.
MAX_GZIP_BYTES = 10 * 1024 * 1024  # "maximum size of 10 MB" per gzip-compressed file
MAX_RUNS = 20  # Runs per file
MAX_RESULTS = 25000  # Results per run (rejected above)
SHOWN_RESULTS = 5000  # "Only the top 5,000 results will be included"
MAX_RULES = 25000  # Rules per run
MAX_EXTENSIONS = 100  # Tool extensions per run
MAX_THREAD_FLOW_LOCATIONS = 10000  # Thread Flow Locations per result (rejected above)
SHOWN_THREAD_FLOW_LOCATIONS = 1000  # "Only the top 1,000 Thread Flow Locations will be included"
MAX_LOCATIONS = 1000  # Location per result (rejected above)
SHOWN_LOCATIONS = 100  # "Only 100 locations will be included"
RESULT_TABLE_MAX_LOCATIONS = 10  # result object table: locations[] "up to a maximum of 10"
MAX_TAGS = 20  # Tags per rule (rejected above)
SHOWN_TAGS = 10  # "Only 10 tags will be included"
MAX_RULE_NAME = 255  # reportingDescriptor.name "Limited to 255 characters"
MAX_DESCRIPTION = 1024  # short/fullDescription.text "Limited to 1024 characters"

RESULT_LEVELS = ("none", "note", "warning", "error")
RULE_DEFAULT_LEVELS = ("note", "warning", "error")
PRECISIONS = ("very-high", "high", "medium", "low")
PROBLEM_SEVERITIES = ("error", "warning", "recommendation")

_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class Report:
    def __init__(self):
        self.violations = []
        self.warnings = []

    def fail(self, path, check, message):
        self.violations.append(f"{path}: [{check}] {message}")

    def warn(self, path, check, message):
        self.warnings.append(f"warning: {path}: [{check}] {message}")


def json_path(parts):
    out = "$"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if re.match(r"^[A-Za-z_$][\w$]*$", p)
                                                    else f"[{json.dumps(p)}]")
    return out


def nonempty_str(v):
    return isinstance(v, str) and v != ""


def get(obj, *keys):
    for k in keys:
        if not isinstance(obj, dict) or k not in obj:
            return None
        obj = obj[k]
    return obj


def as_list(v):
    return v if isinstance(v, list) else []


# ---------------------------------------------------------------------------------------------
# (a) the OASIS schema


def check_schema(doc, rep):
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        schema = json.load(f)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft4Validator)
    validator = cls(schema, format_checker=jsonschema.FormatChecker())
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path))):
        msg = err.message
        if len(msg) > 200:  # the message quotes the whole instance: name the keyword instead
            msg = f"fails {err.validator!r}: {err.validator_value!r}"[:200]
        rep.fail(json_path(list(err.absolute_path)), "schema", msg)


# ---------------------------------------------------------------------------------------------
# (b) GitHub code scanning


def check_file_size(raw, rep):
    # "File compatibility": each gzip-compressed SARIF file may be at most 10 MB.
    size = len(gzip.compress(raw))
    if size > MAX_GZIP_BYTES:
        rep.fail("$", "gh-file-size", f"gzip-compressed size {size} bytes exceeds 10 MB")


def check_log(doc, rep):
    if not isinstance(doc, dict):
        rep.fail("$", "gh-log", "top level is not an object")
        return
    # "sarifLog object": $schema is required (non-empty; "empty string is not supported").
    if not nonempty_str(doc.get("$schema")):
        rep.fail("$.$schema", "gh-schema-uri", "required: the URI of the SARIF 2.1.0 JSON schema")
    # "sarifLog object": code scanning only supports SARIF version 2.1.0.
    if doc.get("version") != "2.1.0":
        rep.fail("$.version", "gh-version", f"must be \"2.1.0\", got {doc.get('version')!r}")
    runs = doc.get("runs")
    # "sarifLog object": runs[] is required, one or more runs.
    if not isinstance(runs, list) or not runs:
        rep.fail("$.runs", "gh-runs", "required: an array of one or more runs")
        return
    # "File compatibility" limits table: Runs per file 20.
    if len(runs) > MAX_RUNS:
        rep.fail("$.runs", "gh-limit-runs", f"{len(runs)} runs, more than {MAX_RUNS}: rejected")
    for i, run in enumerate(runs):
        check_run(run, ["runs", i], rep)


def check_tool_component(comp, path, rep, is_driver):
    p = json_path(path)
    if not isinstance(comp, dict):
        rep.fail(p, "gh-tool-component", "required toolComponent object is missing")
        return []
    # "toolComponent object": name is required.
    if not nonempty_str(comp.get("name")):
        rep.fail(p + ".name", "gh-tool-name", "required: the name of the analysis tool")
    rules = comp.get("rules")
    # "toolComponent object": rules[] is required (for the driver; extensions may carry rules).
    if is_driver and not isinstance(rules, list):
        rep.fail(p + ".rules", "gh-tool-rules", "required: array of reportingDescriptor objects")
    return as_list(rules)


def check_run(run, path, rep):
    p = json_path(path)
    if not isinstance(run, dict):
        rep.fail(p, "gh-run", "run is not an object")
        return
    # "run object": tool.driver is required.
    driver_rules = check_tool_component(get(run, "tool", "driver"), path + ["tool", "driver"], rep,
                                        True)
    extensions = as_list(get(run, "tool", "extensions"))
    # Limits table: Tool extensions per run 100.
    if len(extensions) > MAX_EXTENSIONS:
        rep.fail(p + ".tool.extensions", "gh-limit-extensions",
                 f"{len(extensions)} extensions, more than {MAX_EXTENSIONS}: rejected")
    ext_rule_count = 0
    for j, ext in enumerate(extensions):
        ext_rule_count += len(check_tool_component(ext, path + ["tool", "extensions", j], rep,
                                                   False))
    # Limits table: Rules per run 25,000.
    if len(driver_rules) + ext_rule_count > MAX_RULES:
        rep.fail(p + ".tool", "gh-limit-rules",
                 f"{len(driver_rules) + ext_rule_count} rules, more than {MAX_RULES}: rejected")

    rule_ids = {}
    for k, rule in enumerate(driver_rules):
        check_rule(rule, path + ["tool", "driver", "rules", k], rep, rule_ids, k)
    ext_ids = set()
    for j, ext in enumerate(extensions):
        seen = {}
        for k, rule in enumerate(as_list(get(ext, "rules"))):
            check_rule(rule, path + ["tool", "extensions", j, "rules", k], rep, seen, k)
        ext_ids.update(seen)

    results = run.get("results")
    # "run object": results[] is required.
    if not isinstance(results, list):
        rep.fail(p + ".results", "gh-results", "required: the results of the analysis tool")
        results = []
    # Limits table: Results per run 25,000 (rejected); only the top 5,000 are included.
    if len(results) > MAX_RESULTS:
        rep.fail(p + ".results", "gh-limit-results",
                 f"{len(results)} results, more than {MAX_RESULTS}: rejected")
    elif len(results) > SHOWN_RESULTS:
        rep.warn(p + ".results", "gh-limit-results",
                 f"{len(results)} results: only the top {SHOWN_RESULTS} are included")

    base_ids = get(run, "originalUriBaseIds")
    base_ids = base_ids if isinstance(base_ids, dict) else {}
    root = get(as_list(run.get("invocations"))[0] if as_list(run.get("invocations")) else None,
               "workingDirectory", "uri")
    for i, res in enumerate(results):
        check_result(res, path + ["results", i], rep, driver_rules, rule_ids, ext_ids, base_ids,
                     root)


def check_rule(rule, path, rep, seen, index):
    p = json_path(path)
    if not isinstance(rule, dict):
        rep.fail(p, "gh-rule", "reportingDescriptor is not an object")
        return
    rid = rule.get("id")
    # "reportingDescriptor object": id is required and is a unique identifier for the rule.
    if not nonempty_str(rid):
        rep.fail(p + ".id", "gh-rule-id", "required: a unique identifier for the rule")
    elif rid in seen:
        rep.fail(p + ".id", "gh-rule-id-unique",
                 f"duplicate rule id {rid!r} (also at index {seen[rid]})")
    else:
        seen[rid] = index
    # "reportingDescriptor object": name is limited to 255 characters.
    name = rule.get("name")
    if isinstance(name, str) and len(name) > MAX_RULE_NAME:
        rep.fail(p + ".name", "gh-rule-name-length", f"{len(name)} characters, limit 255")
    # "reportingDescriptor object": shortDescription.text and fullDescription.text are required,
    # each limited to 1024 characters.
    for field in ("shortDescription", "fullDescription"):
        text = get(rule, field, "text")
        if not nonempty_str(text):
            rep.fail(f"{p}.{field}.text", f"gh-rule-{field}", "required, non-empty")
        elif len(text) > MAX_DESCRIPTION:
            rep.fail(f"{p}.{field}.text", f"gh-rule-{field}-length",
                     f"{len(text)} characters, limit {MAX_DESCRIPTION}")
    # "reportingDescriptor object": help.text is required (help.markdown recommended).
    if not nonempty_str(get(rule, "help", "text")):
        rep.fail(p + ".help.text", "gh-rule-help", "required, non-empty")
    elif not nonempty_str(get(rule, "help", "markdown")):
        rep.warn(p + ".help.markdown", "gh-rule-help-markdown", "recommended")
    # "reportingDescriptor object": defaultConfiguration.level is one of note, warning, error.
    level = get(rule, "defaultConfiguration", "level")
    if level is not None and level not in RULE_DEFAULT_LEVELS:
        rep.fail(p + ".defaultConfiguration.level", "gh-rule-default-level",
                 f"{level!r} is not one of note, warning, error")
    props = rule.get("properties")
    if props is None:
        return
    if not isinstance(props, dict):
        rep.fail(p + ".properties", "gh-rule-properties", "not an object")
        return
    pp = p + ".properties"
    # "reportingDescriptor object": properties.tags[] is an array of strings.
    if "tags" in props:
        tags = props["tags"]
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            rep.fail(pp + ".tags", "gh-rule-tags", "must be an array of strings")
        # Limits table: Tags per rule 20 (rejected); only 10 tags are included.
        elif len(tags) > MAX_TAGS:
            rep.fail(pp + ".tags", "gh-limit-tags", f"{len(tags)} tags, more than {MAX_TAGS}: "
                     "rejected")
        elif len(tags) > SHOWN_TAGS:
            rep.warn(pp + ".tags", "gh-limit-tags", f"{len(tags)} tags: only {SHOWN_TAGS} included")
    # "reportingDescriptor object": properties.precision is very-high, high, medium or low.
    if "precision" in props and props["precision"] not in PRECISIONS:
        rep.fail(pp + ".precision", "gh-rule-precision",
                 f"{props['precision']!r} is not one of {', '.join(PRECISIONS)}")
    # "reportingDescriptor object": properties.problem.severity is error, warning or
    # recommendation.
    if "problem.severity" in props and props["problem.severity"] not in PROBLEM_SEVERITIES:
        rep.fail(json_path(path + ["properties", "problem.severity"]), "gh-rule-problem-severity",
                 f"{props['problem.severity']!r} is not one of {', '.join(PROBLEM_SEVERITIES)}")
    # "reportingDescriptor object": properties.security-severity is a string holding a score
    # 0.0-10.0 (over 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium, 0.1-3.9 low; 0.0 = none).
    if "security-severity" in props:
        check_security_severity(props["security-severity"],
                                json_path(path + ["properties", "security-severity"]), rep)


def check_security_severity(value, p, rep):
    if not isinstance(value, str):
        rep.fail(p, "gh-security-severity", f"must be a string, got {type(value).__name__} "
                 f"{value!r}")
        return
    try:
        score = float(value)
    except ValueError:
        score = math.nan
    if math.isnan(score) or math.isinf(score):
        rep.fail(p, "gh-security-severity", f"{value!r} does not parse as a number")
    elif not 0.0 <= score <= 10.0:
        rep.fail(p, "gh-security-severity", f"{value!r} is outside 0.0-10.0")
    elif score == 0.0:
        rep.warn(p, "gh-security-severity", "0.0 is treated as having no security severity")


def check_result(res, path, rep, driver_rules, rule_ids, ext_ids, base_ids, root):
    p = json_path(path)
    if not isinstance(res, dict):
        rep.fail(p, "gh-result", "result is not an object")
        return
    # "result object": ruleId (or rule.id) names a reportingDescriptor.id; code scanning filters
    # and fingerprints alerts by it.
    rid = res.get("ruleId")
    if rid is None:
        rid = get(res, "rule", "id")
    if not nonempty_str(rid):
        rep.fail(p + ".ruleId", "gh-result-rule", "missing: no ruleId or rule.id")
    elif rid not in rule_ids and rid not in ext_ids:
        rep.fail(p + ".ruleId", "gh-result-rule", f"{rid!r} matches no rule in tool.driver.rules")
    # "result object": ruleIndex is the index of the rule in the tool component's rules array.
    idx = res.get("ruleIndex", get(res, "rule", "index"))
    if isinstance(idx, int) and idx >= 0 and get(res, "rule", "toolComponent") is None:
        if idx >= len(driver_rules):
            rep.fail(p + ".ruleIndex", "gh-result-rule-index",
                     f"{idx} is past the end of tool.driver.rules ({len(driver_rules)})")
        elif nonempty_str(rid) and get(driver_rules[idx], "id") != rid:
            rep.fail(p + ".ruleIndex", "gh-result-rule-index",
                     f"rules[{idx}].id is {get(driver_rules[idx], 'id')!r}, not {rid!r}")
    # "result object": level overrides the rule's default; SARIF allows none/note/warning/error.
    if "level" in res and res["level"] not in RESULT_LEVELS:
        rep.fail(p + ".level", "gh-result-level",
                 f"{res['level']!r} is not one of {', '.join(RESULT_LEVELS)}")
    # "result object": message.text is required.
    if not nonempty_str(get(res, "message", "text")):
        rep.fail(p + ".message.text", "gh-result-message", "required, non-empty")
    # "result object": locations[] is required; at least one location is needed to display it.
    locs = res.get("locations")
    if not isinstance(locs, list) or not locs:
        rep.fail(p + ".locations", "gh-result-locations", "required: at least one location")
        locs = []
    # Limits table: Location per result 1,000 (rejected), 100 included; the result object table
    # says "up to a maximum of 10".
    if len(locs) > MAX_LOCATIONS:
        rep.fail(p + ".locations", "gh-limit-locations",
                 f"{len(locs)} locations, more than {MAX_LOCATIONS}: rejected")
    elif len(locs) > RESULT_TABLE_MAX_LOCATIONS:
        rep.warn(p + ".locations", "gh-limit-locations",
                 f"{len(locs)} locations; the result table allows up to 10 "
                 f"({SHOWN_LOCATIONS} are kept), and only the first is used")
    for j, loc in enumerate(locs):
        check_location(loc, path + ["locations", j], rep, base_ids, root)
    # Limits table: Thread Flow Locations per result 10,000 (rejected); 1,000 included.
    tfl = sum(len(as_list(get(tf, "locations")))
              for cf in as_list(res.get("codeFlows")) for tf in as_list(get(cf, "threadFlows")))
    if tfl > MAX_THREAD_FLOW_LOCATIONS:
        rep.fail(p + ".codeFlows", "gh-limit-thread-flow-locations",
                 f"{tfl} thread flow locations, more than {MAX_THREAD_FLOW_LOCATIONS}: rejected")
    elif tfl > SHOWN_THREAD_FLOW_LOCATIONS:
        rep.warn(p + ".codeFlows", "gh-limit-thread-flow-locations",
                 f"{tfl} thread flow locations: only {SHOWN_THREAD_FLOW_LOCATIONS} included")
    # "result object": partialFingerprints is required, a set of strings; "Data for preventing
    # duplicated alerts": code scanning only uses primaryLocationLineHash.
    fps = res.get("partialFingerprints")
    if not isinstance(fps, dict) or not fps:
        rep.fail(p + ".partialFingerprints", "gh-partial-fingerprints",
                 "required: an object of string fingerprints")
    else:
        for k, v in fps.items():
            if not nonempty_str(v):
                rep.fail(json_path(path + ["partialFingerprints", k]), "gh-partial-fingerprints",
                         "fingerprint values must be non-empty strings")
        if "primaryLocationLineHash" not in fps:
            rep.warn(p + ".partialFingerprints", "gh-partial-fingerprints",
                     "no primaryLocationLineHash, the only fingerprint code scanning uses")


def check_location(loc, path, rep, base_ids, root):
    p = json_path(path)
    # "location object": physicalLocation is required.
    phys = get(loc, "physicalLocation")
    if not isinstance(phys, dict):
        rep.fail(p + ".physicalLocation", "gh-location-physical",
                 "required: code scanning needs it to display the result")
        return
    pp = p + ".physicalLocation"
    # "physicalLocation object": artifactLocation.uri is required.
    uri = get(phys, "artifactLocation", "uri")
    if not nonempty_str(uri):
        rep.fail(pp + ".artifactLocation.uri", "gh-artifact-uri", "required, non-empty")
    else:
        check_uri(uri, get(phys, "artifactLocation", "uriBaseId"), pp + ".artifactLocation", rep,
                  base_ids, root)
    # "physicalLocation object": region.startLine is required (startColumn, endLine and endColumn
    # are also marked required, but the page's own minimum example omits endLine).
    region = phys.get("region")
    start = get(region, "startLine")
    if start is None:
        rep.fail(pp + ".region.startLine", "gh-region-start-line",
                 "required: the line number of the first character in the region")
    elif not isinstance(start, int) or isinstance(start, bool) or start < 1:
        rep.fail(pp + ".region.startLine", "gh-region-start-line", f"{start!r} is not >= 1")
    if isinstance(region, dict):
        for field in ("startColumn", "endLine", "endColumn"):
            if field not in region:
                rep.warn(f"{pp}.region.{field}", "gh-region-fields", "marked required in the doc")
        end = region.get("endLine")
        if isinstance(start, int) and isinstance(end, int) and end < start:
            rep.fail(pp + ".region.endLine", "gh-region-end-line",
                     f"endLine {end} is before startLine {start}")


def check_uri(uri, base_id, p, rep, base_ids, root):
    absolute = bool(_SCHEME_RE.match(uri))
    # "Root location for source files": absolute URIs must use the source root's URI scheme, or
    # the upload is rejected (source root here: invocations[0].workingDirectory.uri).
    if absolute and nonempty_str(root) and _SCHEME_RE.match(root):
        if uri.split(":", 1)[0].lower() != root.split(":", 1)[0].lower():
            rep.fail(p + ".uri", "gh-uri-scheme",
                     f"scheme of {uri!r} differs from the source root {root!r}: rejected")
    # "physicalLocation object": for best results, a path relative to the repository root;
    # an absolute URI outside the source root stays absolute and matches no repository file.
    if absolute and not (nonempty_str(root) and uri.startswith(root)):
        rep.warn(p + ".uri", "gh-uri-relative",
                 f"absolute URI {uri!r}: not under a source root, matches no repository file")
    # "Relative URI Guidance for SARIF Producers": a uriBaseId must be defined in
    # run.originalUriBaseIds for relative references to be valid SARIF.
    if base_id is not None and base_id not in base_ids:
        rep.fail(p + ".uriBaseId", "gh-uri-base-id",
                 f"{base_id!r} is not defined in run.originalUriBaseIds")


def main(argv):
    args = [a for a in argv[1:] if a != "-q"]
    quiet = len(args) != len(argv) - 1
    if len(args) != 1:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        with open(args[0], "rb") as f:
            raw = f.read()
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        print(f"{args[0]}: cannot read as JSON: {e}", file=sys.stderr)
        return 2
    rep = Report()
    check_schema(doc, rep)
    check_file_size(raw, rep)
    check_log(doc, rep)
    for line in rep.violations + ([] if quiet else rep.warnings):
        print(line)
    if rep.violations:
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
