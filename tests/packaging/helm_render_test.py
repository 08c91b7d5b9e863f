"""Tests of helm_render.py, the chart renderer check_packaging.sh uses when helm is not installed.

Run: python3 tests/packaging/helm_render_test.py   (needs python3 with PyYAML)
One test per template construct the chart uses, with Helm's output as the expectation, and the
errors that keep an unsupported construct or a missing value from passing silently.
"""
import os
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import helm_render  # noqa: E402
from helm_render import TemplateError  # noqa: E402

CHART = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "packaging", "helm",
                     "kspm")
ROOT = {
    "Values": {"name": "kspm", "port": 7443, "on": True, "off": False, "empty": "",
               "agent": {"image": {"repository": "kspm/agent", "tag": ""}},
               "list": [], "res": {"requests": {"memory": "32Mi", "cpu": "10m"}},
               "tolerations": [{"operator": "Exists"}], "mode": "token"},
    "Release": {"Name": "rel", "Namespace": "ns", "Service": "Helm"},
    "Chart": {"Name": "kspm", "Version": "0.1.0+g1", "AppVersion": "1.2.3"},
}


def render(text, root=ROOT):
    nodes, defines = helm_render.parse(helm_render.lex(text, "t.yaml"), "t.yaml")
    return helm_render.Renderer(root, defines).render(nodes, root)


class ValuesTest(unittest.TestCase):
    def test_looks_up_dotted_values_release_and_chart(self):
        self.assertEqual(render("{{ .Values.agent.image.repository }} {{ .Release.Namespace }} "
                                "{{ .Chart.AppVersion }}"), "kspm/agent ns 1.2.3")

    def test_prints_numbers_and_booleans_as_go_does(self):
        self.assertEqual(render("{{ .Values.port }} {{ .Values.on }} {{ .Values.off }}"),
                         "7443 true false")

    def test_dot_and_dollar_are_the_context_and_the_root(self):
        t = ('{{- define "n" -}}{{ .Values.name }}{{- end -}}'
             '{{ with .Values.agent }}{{ include "n" $ }}/{{ .image.repository }}{{ end }}')
        self.assertEqual(render(t), "kspm/kspm/agent")

    def test_fields_of_dollar_are_refused(self):
        with self.assertRaisesRegex(TemplateError, "cannot parse"):
            render("{{ $.Values.name }}")

    def test_missing_value_is_an_error_not_empty(self):
        with self.assertRaisesRegex(TemplateError, "no Values.agent.nope"):
            render("{{ .Values.agent.nope }}")

    def test_string_and_number_literals(self):
        self.assertEqual(render('{{ "a\\"b" }} {{ -3 }}'), 'a"b -3')


class WhitespaceTest(unittest.TestCase):
    def test_trim_markers_eat_whitespace_and_newlines_on_their_side(self):
        self.assertEqual(render("a:  \n  {{- .Values.name -}}  \n  :b"), "a:kspm:b")

    def test_comments_render_nothing(self):
        self.assertEqual(render("x{{/* a\ncomment */}}y{{- /* trimmed */ -}}\n z"), "xyz")

    def test_unterminated_comment_is_an_error(self):
        with self.assertRaisesRegex(TemplateError, "unterminated comment"):
            render("{{/* oops }}")


class ConditionalsTest(unittest.TestCase):
    def test_if_renders_its_body_when_true(self):
        self.assertEqual(render("{{ if .Values.on }}yes{{ end }}"), "yes")

    def test_if_else_takes_else_on_go_falsy_values(self):
        for v in ("off", "empty", "list"):
            self.assertEqual(render(f"{{{{ if .Values.{v} }}}}yes{{{{ else }}}}no{{{{ end }}}}"),
                             "no", v)

    def test_zero_is_false(self):
        root = dict(ROOT, Values={"n": 0})
        self.assertEqual(render("{{ if .Values.n }}yes{{ else }}no{{ end }}", root), "no")

    def test_nested_if_in_else(self):
        t = ('{{ if eq .Values.mode "a" }}A{{ else }}{{ if eq .Values.mode "token" }}T{{ else }}'
             '?{{ end }}{{ end }}')
        self.assertEqual(render(t), "T")

    def test_with_rebinds_dot_and_skips_empty(self):
        self.assertEqual(render("{{ with .Values.agent.image }}{{ .repository }}{{ end }}"),
                         "kspm/agent")
        self.assertEqual(render("{{ with .Values.empty }}x{{ end }}"), "")

    def test_with_else_keeps_the_outer_dot(self):
        self.assertEqual(render("{{ with .Values.list }}x{{ else }}{{ .Values.name }}{{ end }}"),
                         "kspm")

    def test_else_if_is_refused(self):
        with self.assertRaisesRegex(TemplateError, "unsupported else"):
            render("{{ if .Values.on }}a{{ else if .Values.off }}b{{ end }}")

    def test_else_outside_a_block_is_refused(self):
        with self.assertRaisesRegex(TemplateError, "unsupported else"):
            render("{{ else }}")


class IncludeTest(unittest.TestCase):
    def test_include_renders_a_define_with_the_context_given(self):
        t = ('{{- define "x.name" -}}{{ .Release.Name }}-{{ .Values.name }}{{- end -}}'
             '[{{ include "x.name" . }}]')
        self.assertEqual(render(t), "[rel-kspm]")

    def test_defines_are_collected_not_rendered(self):
        nodes, defines = helm_render.parse(helm_render.lex('a{{ define "d" }}b{{ end }}c', "t"),
                                           "t")
        self.assertEqual(set(defines), {"d"})
        self.assertEqual(helm_render.Renderer(ROOT, defines).render(nodes, ROOT), "ac")

    def test_include_of_an_undefined_template_is_an_error(self):
        with self.assertRaisesRegex(TemplateError, "undefined template 'nope'"):
            render('{{ include "nope" . }}')

    def test_include_as_if_condition(self):
        t = '{{- define "on" -}}true{{- end -}}{{- define "off" -}}{{- end -}}' \
            '{{ if include "on" . }}1{{ end }}{{ if include "off" . }}2{{ end }}'
        self.assertEqual(render(t), "1")


class FunctionsTest(unittest.TestCase):
    def test_default_takes_the_piped_value_unless_empty(self):
        self.assertEqual(render("{{ .Values.agent.image.tag | default .Chart.AppVersion }}"),
                         "1.2.3")
        self.assertEqual(render('{{ .Values.name | default "x" }}'), "kspm")

    def test_quote(self):
        self.assertEqual(render("{{ .Values.name | quote }} {{ .Values.port | quote }}"),
                         '"kspm" "7443"')

    def test_to_yaml_with_nindent(self):
        self.assertEqual(render("r:{{ toYaml .Values.res | nindent 2 }}"),
                         "r:\n  requests:\n    cpu: 10m\n    memory: 32Mi")

    def test_to_yaml_of_a_list_with_nindent(self):
        self.assertEqual(render("t:{{ with .Values.tolerations }}{{ toYaml . | nindent 2 }}"
                                "{{ end }}"), "t:\n  - operator: Exists")

    def test_indent(self):
        self.assertEqual(render('{{ indent 2 "a" }}'), "  a")

    def test_printf_and_replace(self):
        self.assertEqual(render('{{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}'),
                         "kspm-0.1.0_g1")

    def test_eq(self):
        self.assertEqual(render('{{ eq .Values.mode "token" }} {{ eq .Values.mode "x" }}'),
                         "true false")

    def test_fail_stops_the_rendering_with_its_message(self):
        with self.assertRaisesRegex(TemplateError, "fail: mode must be token"):
            render('{{ fail "mode must be token" }}')

    def test_pipeline_with_a_quoted_bar(self):
        self.assertEqual(render('{{ "a|b" | replace "|" "-" }}'), "a-b")


class UnsupportedTest(unittest.TestCase):
    def test_range_is_refused(self):
        with self.assertRaisesRegex(TemplateError, "range is not supported"):
            render("{{ range .Values.tolerations }}{{ .operator }}{{ end }}")

    def test_unknown_function_is_refused(self):
        with self.assertRaisesRegex(TemplateError, "function upper is not supported"):
            render("{{ .Values.name | upper }}")

    def test_variables_are_refused(self):
        with self.assertRaises(TemplateError):
            render("{{ $x := .Values.name }}{{ $x }}")

    def test_unbalanced_braces(self):
        with self.assertRaisesRegex(TemplateError, "1 '{{' but 0 '}}'"):
            render("{{ .Values.name ")

    def test_unbalanced_end(self):
        with self.assertRaisesRegex(TemplateError, "unbalanced end"):
            render("{{ end }}")

    def test_block_without_end(self):
        with self.assertRaisesRegex(TemplateError, "1 block"):
            render("{{ if .Values.on }}x")


class ValuesFileTest(unittest.TestCase):
    def test_set_reads_the_value_as_yaml_into_dotted_keys(self):
        values = {"a": {"b": 1}}
        helm_render.set_values(values, ["--set", "a.c=true", "--set", "d.e=24", "--set", "a.b=x"])
        self.assertEqual(values, {"a": {"b": "x", "c": True}, "d": {"e": 24}})

    def test_set_refuses_anything_else(self):
        with self.assertRaises(ValueError):
            helm_render.set_values({}, ["--set", "novalue"])
        with self.assertRaises(ValueError):
            helm_render.set_values({}, ["--values", "x.yaml"])

    def test_lint_names_missing_chart_fields_and_values(self):
        errors = helm_render.lint({"apiVersion": "v1", "name": "x"}, {"agent": {"image": {}}})
        for want in ("Chart.yaml: no version", "Chart.yaml: no appVersion",
                     "Chart.yaml: apiVersion is not v2", "values.yaml: no clusterName",
                     "values.yaml: no agent.image.repository", "values.yaml: no tls.caKeySecret"):
            self.assertIn(want, errors)
        self.assertNotIn("values.yaml: no agent.image.tag", errors)


class ChartTest(unittest.TestCase):
    """The real chart, as check_packaging.sh renders it."""

    def test_renders_in_both_modes_without_problems(self):
        for overrides in ([], ["--set", "enrollment.mode=static"]):
            text, errors = helm_render.render_chart(CHART, "kspm-system", overrides)
            self.assertEqual(errors, [], overrides)
            self.assertIn("kind: DaemonSet", text)
            self.assertEqual(("tokenreviews" in text), not overrides, overrides)

    def test_an_unknown_mode_fails(self):
        _, errors = helm_render.render_chart(CHART, "kspm-system",
                                             ["--set", "enrollment.mode=tokn"])
        self.assertTrue(any("enrollment.mode must be token or static" in e for e in errors),
                        errors)

    def test_main_writes_the_output_and_exits_non_zero_on_problems(self):
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "out.yaml")
            self.assertEqual(helm_render.main([CHART, "kspm-system", out]), 0)
            with open(out) as f:
                self.assertIn("# Source: rbac.yaml", f.read())


if __name__ == "__main__":
    unittest.main()
