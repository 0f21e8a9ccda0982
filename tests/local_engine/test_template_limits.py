"""Chat-template memory limits: every way a template can build a huge value fails typed, at once."""

from __future__ import annotations

import tracemalloc

import pytest

from local_engine.chat_template import ChatTemplate
from local_engine.errors import ChatTemplateError

BIG = "{% set big = 'x' * 1000000 %}"  # just under the 1 MiB output cap
LOOP = "{% for i in range(2000) %}{{ big }}{% endfor %}"  # 2000 references to it: 2 GB if joined

AMPLIFIERS = {
    "repeat a string": "{{ 'x' * 10**9 }}",
    "repeat a list": "{{ ([0] * 10**9)|length }}",
    "double with ~": "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "double with +": "{% set ns = namespace(s=[0]) %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}",
    "capture a loop": BIG + "{% set t %}" + LOOP + "{% endset %}{{ t|length }}",
    "macro body": BIG + "{% macro m() %}" + LOOP + "{% endmacro %}{{ m()|length }}",
    "join filter": BIG + "{{ ([big] * 2)|join|length }}",
    "join method": BIG + "{{ ''.join([big, big])|length }}",
    "center filter": "{{ 'x'|center(10**9)|length }}",
    "indent filter": BIG.replace("'x'", "'\\n'") + "{{ big|indent(1000)|length }}",
    "pad method": "{{ 'x'.ljust(10**9)|length }}",
    "zfill method": "{{ '1'.zfill(10**9)|length }}",
    "replace method": BIG + "{{ big.replace('x', 'yy')|length }}",
    "replace filter": BIG + "{{ big|replace('x', 'yy')|length }}",
    "format filter": "{{ '%1000000000d'|format(1)|length }}",
    "format method": "{{ '{:>1000000000}'.format(1)|length }}",
    "percent": "{{ ('%1000000000d' % 1)|length }}",
    "huge integer": "{{ (10 ** 1000000000) > 1 }}",
    "huge product": "{% set n = 2 ** 60000 %}{{ (n * n) > 1 }}",
    "json indent": "{{ messages|tojson(indent=1000000000) }}",
}


@pytest.mark.parametrize("source", AMPLIFIERS.values(), ids=AMPLIFIERS.keys())
def test_an_amplifying_template_fails_before_it_allocates(source: str) -> None:
    template = ChatTemplate(source, {})
    tracemalloc.start()
    try:
        with pytest.raises(ChatTemplateError) as info:
            template.render([{"role": "user", "content": "hi"}])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.code == "template.too-large", info.value
    # A few copies of the cap at most (a list of 1 Mi items is 8 MiB of references), never GBs.
    assert peak < 32 * (1 << 20), peak


def test_the_size_cap_follows_max_output_chars() -> None:
    template = ChatTemplate("{{ 'x' * n }}", {}, max_output_chars=100)
    assert template.render([], n=100) == "x" * 100
    with pytest.raises(ChatTemplateError, match="a str over 100 items"):
        template.render([], n=101)


REAL_SHAPES = """\
{%- set ns = namespace(system='') -%}
{%- for message in messages -%}
  {%- if message.role == 'system' -%}{%- set ns.system = ns.system + message.content -%}{%- endif -%}
{%- endfor -%}
{{ bos_token }}{{ '<|system|>' ~ ns.system|trim ~ '\\n' if ns.system }}
{%- for message in messages if message.role != 'system' -%}
  {{ '<|' + message.role + '|>' }}{{ message.content|replace('\\t', '    ')|indent(2) }}
  {{- '[' ~ loop.index0 ~ '/' ~ (messages|length - 1) * 1 ~ ']' }}{{ eos_token }}
{% endfor -%}
{{ '%s|%d' % ('tools', tools|length) if tools }}{{ tools|tojson(indent=2) if tools }}
{{- ', '.join(['a', 'b']) ~ 'x'.center(5, '-') ~ '7'.zfill(3) ~ (2 ** 10)|string }}
"""


def test_ordinary_templates_render_as_before() -> None:
    template = ChatTemplate(REAL_SHAPES, {"bos_token": "<s>", "eos_token": "</s>"})
    messages = [
        {"role": "system", "content": "Be brief. "},
        {"role": "user", "content": "one\n\ttwo"},
        {"role": "assistant", "content": "ok"},
    ]
    tools = [{"type": "function", "function": {"name": "f"}}]
    assert template.render(messages, tools=tools) == (
        "<s><|system|>Be brief.\n"
        "<|user|>one\n      two[0/2]</s>\n"
        "<|assistant|>ok[1/2]</s>\n"
        'tools|1[\n  {\n    "type": "function",\n    "function": {\n      "name": "f"\n    }\n  }\n]'
        "a, b--x--0071024"
    )
