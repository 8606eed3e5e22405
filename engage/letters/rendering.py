"""Render letter templates in a sandbox, from plain data rather than ORM objects.

- The sandbox (ImmutableSandboxedEnvironment) refuses access to Python internals
  (`__class__`, `mro`, `|attr` tricks) and to methods that mutate data.
- Strict undefined variables: a misspelt or missing value is an error naming what is missing,
  never a silently blank letter. Missing data (a company without an address, a campaign without
  signatories) is left out of the context, so a template that uses it fails with a hint.
- Bounds inside the sandbox, so a hostile or careless template is refused at once with a message
  saying what it asked for: loop steps and `range` across the whole render, integers of at most
  about 1,000 digits, text of at most MAX_STRING characters and lists of at most MAX_ITEMS items
  from any operator (`*`, `+`, `~`, `%`), text method (`ljust`, `replace`, `join`, `format`
  widths...), filter (`center`, `indent`, `format`, `join`, `replace`...), captured block or
  `lipsum`; the output is cut at MAX_OUTPUT characters.
- A hard budget outside it, which no template can get around: every render runs in a worker
  process (engage.bounded) with a time and memory limit (TEMPLATE_RENDER_SECONDS and
  TEMPLATE_RENDER_MEMORY_MB per letter, TEMPLATE_BATCH_SECONDS for a bulk generation in all),
  killed when its time is up.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from contextlib import closing
from typing import Sequence

from flask import current_app, has_app_context
from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, nodes
from jinja2.compiler import CodeGenerator, optimizeconst
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEscapeFormatter, SandboxedFormatter
from jinja2.utils import _PassArg, generate_lorem_ipsum, missing

from engage import bounded, clock, formatting

MAX_OUTPUT = 100_000
#: The longest text any one expression may build, in characters.
MAX_STRING = MAX_OUTPUT
#: The longest list a filter or call may return.
MAX_ITEMS = MAX_OUTPUT
MAX_RANGE_ITEMS = 10_000
#: Repetition (`'x' * n`, `[x] * n`) may build at most this many characters or items.
MAX_SEQUENCE = 10_000
MAX_EXPONENT = 100
#: Integers may have about 1,000 decimal digits (10**1000 needs 3,322 bits).
MAX_INT_DIGITS = 1000
MAX_INT_BITS = 3322
#: Steps of all `{% for %}` loops of one render together.
MAX_LOOP_STEPS = 100_000
#: lipsum() may produce at most this many words (paragraphs × words per paragraph).
MAX_LIPSUM_WORDS = 2_000
#: The widest indent `tojson` may use.
MAX_JSON_INDENT = 8

#: Budgets when no app is configured (the app's settings of the same names win).
DEFAULT_SECONDS = 2.0
DEFAULT_MEMORY_MB = 256
DEFAULT_BATCH_SECONDS = 30.0

#: Hints shown when a template uses a value the data does not have.
MISSING_HINTS = {
    "company.address": "add the company's postal address on its page",
    "company.isin": "add the company's ISIN on its page",
    "company.country": "add the company's country on its page",
    "company.sector": "add the company's sector on its page",
    "campaign.letterhead": "set the campaign's letterhead (Admin → Campaigns)",
    "campaign.call_to_action": "describe the campaign's Call to Action (Admin → Campaigns)",
    "campaign.call_to_action_url": "give the campaign's Call to Action link (Admin → Campaigns)",
    "signatories": "the campaign has no co-signatories yet (Admin → Campaigns)",
    "signatories_aum": "no co-signatory has a known AUM (Admin → Investors)",
    "engagement.owner": "assign an owner to the engagement",
    "engagement.last_letter_date": "no letter has been sent on this engagement yet",
    "sender.name": "the letter has no sender",
    "addressee.address": "add a postal address to the contact or to the company",
    "addressee.title": "give the contact a title",
    "letter.subject": "the cover note is written for a letter",
}


class LetterTemplateError(ValueError):
    """A template that cannot be rendered; `line` is 1-based when known.

    `part` is the index of the source (subject, body) and `item` the index of the context
    (the letter of a bulk generation) it concerns, when known.
    """

    def __init__(self, message: str, line: int | None = None, part: int | None = None, item: int | None = None):
        super().__init__(f"line {line}: {message}" if line else message)
        self.message = message
        self.line = line
        self.part = part
        self.item = item


class Record(dict):
    """A dict that knows its place in the context, for 'company.address is missing' messages."""

    def __init__(self, path: str, values: dict):
        super().__init__({k: v for k, v in values.items() if v not in (None, "", [], ())})
        self.path = path


class MissingValue(StrictUndefined):
    """StrictUndefined with messages that name the missing value and how to supply it."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        owner = self._undefined_obj
        if owner is missing:
            path = str(self._undefined_name)
        elif isinstance(owner, Record):
            path = f"{owner.path}.{self._undefined_name}"
        else:
            return f"a {type(owner).__name__} value has no attribute {self._undefined_name!r}"
        hint = MISSING_HINTS.get(path)
        if hint:
            return f"{path} is missing: {hint}."
        return f"{path} is not a variable letters can use."


# --- bounds inside the sandbox -------------------------------------------------------------

def _refuse(message: str):
    raise SecurityError(message)


def _check_size(value):
    """Refuse a value (result or operand) larger than a letter could ever need; return it."""
    if isinstance(value, (str, bytes)) and len(value) > MAX_STRING:
        _refuse(f"text longer than {MAX_STRING:,} characters")
    if isinstance(value, (list, tuple, dict, set)) and len(value) > MAX_ITEMS:
        _refuse(f"lists longer than {MAX_ITEMS:,} items")
    if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
        _refuse(f"numbers of more than {MAX_INT_DIGITS:,} digits")
    return value


def _check_width(value, what: str = "widths and counts", limit: int = MAX_STRING) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > limit:
        _refuse(f"{what} above {limit:,}")


def _digits_too_big(digits: str) -> bool:
    return len(digits) > len(str(MAX_STRING)) or int(digits) > MAX_STRING


_FORMAT_SPEC_NUMBER = re.compile(r"\d+")
#: One %-conversion: %(key)flags width .precision length type.
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?[a-zA-Z%]")


def _check_format_spec(spec: str) -> None:
    """'{:>100000000}' and '{:.100000000f}': no width or precision beyond MAX_STRING."""
    if any(_digits_too_big(n) for n in _FORMAT_SPEC_NUMBER.findall(spec or "")):
        _refuse(f"format widths or precisions above {MAX_STRING:,}")


def _check_percent(template, values) -> None:
    """'%0100000000d' % 1, '%*d' % (10**8, 1): no width or precision beyond MAX_STRING."""
    if not isinstance(template, str):
        return
    star = False
    for match in _PERCENT_SPEC.finditer(template):
        for group in match.group(1, 2):
            if group == "*":
                star = True
            elif group and _digits_too_big(group):
                _refuse(f"format widths or precisions above {MAX_STRING:,}")
    if star:
        for value in values if isinstance(values, tuple) else (values,):
            _check_width(value, "format widths or precisions")


def _text_len(value) -> int:
    return len(value) if isinstance(value, (str, bytes)) else len(str(value))


def _estimate_replace(text, old, new, count=None) -> None:
    if not isinstance(text, (str, bytes)) or not isinstance(old, type(text)) or not isinstance(new, type(text)):
        return
    if len(new) <= len(old):
        return
    found = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    if len(text) + found * (len(new) - len(old)) > MAX_STRING:
        _refuse(f"replacing that would make text longer than {MAX_STRING:,} characters")


def _estimate_join(separator, items: list) -> None:
    total = sum(_text_len(item) for item in items) + len(separator) * max(0, len(items) - 1)
    if total > MAX_STRING:
        _refuse(f"joining that would make text longer than {MAX_STRING:,} characters")


def _filter_checks(name: str, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """Check a filter's arguments before it runs; may return materialised arguments."""
    value, params = (args[0], args[1:]) if args else (None, ())

    def arg(index: int, key: str, default=None):
        return params[index] if len(params) > index else kwargs.get(key, default)

    if name == "format":
        _check_percent(str(value), kwargs or params)
    elif name == "replace":
        _check_width(arg(2, "count"))
        _estimate_replace(str(value), str(arg(0, "old", "")), str(arg(1, "new", "")), arg(2, "count"))
    elif name == "join":
        items = list(value) if value is not None else []
        if arg(1, "attribute") is None:
            _estimate_join(str(arg(0, "d", "")), items)
        args = (items, *params)
    elif name in ("center", "truncate"):
        _check_width(arg(0, "width" if name == "center" else "length"))
        _check_size(arg(2, "end", ""))
    elif name == "indent":
        width = arg(0, "width", 4)
        _check_width(width)
        pad = len(width) if isinstance(width, str) else max(0, width) if isinstance(width, int) else 0
        if len(str(value)) + (str(value).count("\n") + 1) * pad > MAX_STRING:
            _refuse(f"indenting that would make text longer than {MAX_STRING:,} characters")
    elif name == "wordwrap":
        _check_width(arg(0, "width", 79))
        wrapstring = arg(2, "wrapstring")
        if wrapstring is not None and len(str(wrapstring)) > 10:
            _refuse("wordwrap line breaks longer than 10 characters")
    elif name in ("batch", "slice"):
        _check_width(arg(0, "linecount" if name == "batch" else "slices"), "batch and slice sizes", MAX_ITEMS)
    elif name == "tojson":
        _check_width(arg(0, "indent"), "tojson indents", MAX_JSON_INDENT)
    return args, kwargs


def _guard_filter(name: str, func):
    """Wrap a filter with its argument checks and the result size check."""
    skip = 0 if _PassArg.from_obj(func) is None else 1  # the context/environment argument

    @functools.wraps(func)
    def guarded(*args, **kwargs):
        head, rest = args[:skip], args[skip:]
        rest, kwargs = _filter_checks(name, rest, kwargs)
        return _check_size(func(*head, *rest, **kwargs))

    return guarded


def _check_text_call(method, args: tuple, kwargs: dict) -> tuple:
    """Before a str/bytes/int method runs: no number beyond MAX_STRING, no growth beyond it."""
    for value in (*args, *kwargs.values()):
        _check_width(value, f"numbers given to {method.__name__}()")
    target, name = method.__self__, method.__name__
    if name == "replace" and len(args) >= 2:
        _estimate_replace(target, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count"))
    elif name == "join" and args:
        items = list(args[0])
        _estimate_join(target, items)
        args = (items, *args[1:])
    elif name == "expandtabs" and isinstance(target, (str, bytes)):
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int) and len(target) + target.count("\t" if isinstance(target, str) else b"\t") * size > MAX_STRING:
            _refuse(f"expanding tabs that would make text longer than {MAX_STRING:,} characters")
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, (str, bytes))), default=1)
        if len(target) * max(1, longest) > MAX_STRING:
            _refuse(f"translating that would make text longer than {MAX_STRING:,} characters")
    return args


class _BoundedFormat:
    def format_field(self, value, format_spec):
        _check_format_spec(format_spec)
        return _check_size(super().format_field(value, format_spec))


class _BoundedFormatter(_BoundedFormat, SandboxedFormatter):
    pass


class _BoundedEscapeFormatter(_BoundedFormat, SandboxedEscapeFormatter):
    pass


class _LetterCodeGenerator(CodeGenerator):
    """Jinja's code generator, with `~` concatenation going through the environment's bound."""

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame) -> None:
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            join = "markup_join"
        else:
            join = "str_join"
        self.write(f"environment.bounded_join({join}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class LetterEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox plus budgets on the ways a template can make work for itself."""

    intercepted_binops = frozenset({"*", "**", "+", "-", "%"})
    code_generator_class = _LetterCodeGenerator

    def __init__(self):
        super().__init__(undefined=MissingValue, autoescape=False, keep_trailing_newline=True)
        self.globals["range"] = self._limited_range
        self.globals["lipsum"] = self._limited_lipsum
        self.filters = {name: _guard_filter(name, func) for name, func in self.filters.items()}
        self.concat = self._bounded_concat  # captured output: {% set %}…{% endset %}, macros, filter blocks
        self.reset_budgets()

    def reset_budgets(self) -> None:
        """Budgets count across one render; the same compiled template renders many letters."""
        self._range_budget = MAX_RANGE_ITEMS
        self._loop_budget = MAX_LOOP_STEPS

    def _limited_range(self, *args):
        for value in args:
            _check_width(value, "range bounds", 10**18)
        values = range(*args)
        self._range_budget -= len(values)
        if self._range_budget < 0:
            raise SecurityError(f"loops in a letter may not run more than {MAX_RANGE_ITEMS} steps in all")
        return values

    @staticmethod
    def _limited_lipsum(n=5, html=True, min=20, max=100):
        if not all(isinstance(v, int) for v in (n, min, max)) or n * max > MAX_LIPSUM_WORDS:
            raise SecurityError(f"lipsum() may make at most {MAX_LIPSUM_WORDS:,} words (paragraphs × max words)")
        return generate_lorem_ipsum(n, html, min, max)

    def loop_steps(self, iterable):
        """Every `{% for %}` iterates through here, so all loops of a render share one budget."""
        for item in iterable:
            self._loop_budget -= 1
            if self._loop_budget < 0:
                raise SecurityError(f"loops in a letter may not run more than {MAX_LOOP_STEPS:,} steps in all")
            yield item

    def _parse(self, source, name, filename):
        """Parse, then route every loop's iterable through loop_steps()."""
        template = super()._parse(source, name, filename)
        for loop in template.find_all(nodes.For):
            loop.iter = nodes.Call(nodes.EnvironmentAttribute("loop_steps"), [loop.iter], [], None, None,
                                   lineno=loop.iter.lineno)
        return template

    def bounded_join(self, join, values):
        total = sum(_text_len(value) for value in values)
        if total > MAX_STRING:
            raise SecurityError(f"text longer than {MAX_STRING:,} characters")
        return join(values)

    def _bounded_concat(self, parts):
        parts = list(parts)
        if sum(len(part) for part in parts) > MAX_STRING:
            raise SecurityError(f"text longer than {MAX_STRING:,} characters")
        return "".join(parts)

    def call_binop(self, context, operator_name, left, right):
        if operator_name == "**":
            if isinstance(right, (int, float)) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"powers above {MAX_EXPONENT} are not allowed in letters")
            if isinstance(left, int) and isinstance(right, int) and right > 0 \
                    and abs(left).bit_length() * right > MAX_INT_BITS:
                raise SecurityError(f"numbers of more than {MAX_INT_DIGITS:,} digits are not allowed in letters")
        elif operator_name == "*":
            sequences = (str, bytes, list, tuple)
            if isinstance(left, sequences) or isinstance(right, sequences):
                seq, times = (left, right) if isinstance(left, sequences) else (right, left)
                if isinstance(times, int) and len(seq) * times > MAX_SEQUENCE:
                    raise SecurityError(f"repeating text or lists beyond {MAX_SEQUENCE} items is not allowed")
            elif isinstance(left, int) and isinstance(right, int) \
                    and abs(left).bit_length() + abs(right).bit_length() > MAX_INT_BITS:
                raise SecurityError(f"numbers of more than {MAX_INT_DIGITS:,} digits are not allowed in letters")
        elif operator_name == "+":
            if hasattr(left, "__len__") and hasattr(right, "__len__") and not isinstance(left, dict):
                if len(left) + len(right) > MAX_STRING:
                    raise SecurityError(f"text or lists longer than {MAX_STRING:,} are not allowed in letters")
        elif operator_name == "%":
            _check_percent(left, right)
        return _check_size(self.binop_table[operator_name](left, right))

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 (Jinja's signature)
        if isinstance(__obj, LoopContext) and args:  # a recursive loop's loop(items)
            args = (__self.loop_steps(args[0]), *args[1:])
        elif getattr(__obj, "__self__", None) is not None and isinstance(__obj.__self__, (str, bytes, int)) \
                and not isinstance(__obj.__self__, bool) and type(__obj).__name__ == "builtin_function_or_method":
            args = _check_text_call(__obj, args, kwargs)
        return _check_size(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value):
        """str.format and format_map, as the sandbox does, with widths and precisions bounded."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        f_self = value.__self__
        formatter = _BoundedEscapeFormatter(self, escape=f_self.escape) if hasattr(f_self, "__html__") \
            else _BoundedFormatter(self)
        is_format_map = value.__name__ == "format_map"

        @functools.wraps(value)
        def bounded(*args, **kwargs):
            if is_format_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                args, kwargs = (), args[0]
            return _check_size(type(f_self)(formatter.vformat(f_self, args, kwargs)))

        return bounded


# --- rendering: in this process (the worker's side) -----------------------------------------

def _template_line(exc: BaseException) -> int | None:
    """The template line an error happened on, from Jinja's rewritten traceback."""
    line = getattr(exc, "lineno", None)
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _compile(env: LetterEnvironment, source: str):
    try:
        return env.from_string(source)
    except TemplateSyntaxError as exc:
        raise LetterTemplateError(f"syntax error: {exc.message}", exc.lineno) from exc
    except SecurityError as exc:
        raise LetterTemplateError(f"not allowed in a letter template: {exc}", exc.lineno) from exc
    except RecursionError as exc:
        raise LetterTemplateError("the template is nested too deeply") from exc


def _generate(env: LetterEnvironment, template, context: dict) -> str:
    env.reset_budgets()
    parts, size = [], 0
    try:
        for chunk in template.generate(context):
            size += len(chunk)
            if size > MAX_OUTPUT:
                raise LetterTemplateError(f"the letter is longer than {MAX_OUTPUT:,} characters; "
                                          "check the template for a runaway loop")
            parts.append(chunk)
    except LetterTemplateError:
        raise
    except UndefinedError as exc:
        raise LetterTemplateError(exc.message or str(exc), _template_line(exc)) from exc
    except SecurityError as exc:
        raise LetterTemplateError(f"not allowed in a letter template: {exc}", _template_line(exc)) from exc
    except TemplateError as exc:
        raise LetterTemplateError(str(exc), _template_line(exc)) from exc
    except RecursionError as exc:
        raise LetterTemplateError("the template calls itself without end") from exc
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        raise LetterTemplateError(f"{type(exc).__name__}: {exc}", _template_line(exc)) from exc
    return "".join(parts)


#: Compiled templates of this worker process, by their sources (a bulk run compiles once).
_compiled: dict[tuple[str, ...], tuple] = {}


def _render_job(sources: tuple[str, ...], context: dict) -> tuple:
    """Run in the worker: render every source against one context.

    Returns ("ok", [texts]) or ("error", part, message, line): plain data, sent back by pipe.
    """
    if sources not in _compiled:
        env = LetterEnvironment()
        compiled = []
        for source in sources:
            try:
                compiled.append(_compile(env, source))
            except LetterTemplateError as exc:
                compiled.append(exc)
        _compiled.clear()
        _compiled[sources] = (env, compiled)
    env, compiled = _compiled[sources]
    texts = []
    for part, template in enumerate(compiled):
        try:
            if isinstance(template, LetterTemplateError):
                raise template
            texts.append(_generate(env, template, context))
        except LetterTemplateError as exc:
            return ("error", part, exc.message, exc.line)
    return ("ok", texts)


# --- rendering: the web process's side -----------------------------------------------------

def budget() -> bounded.Budget:
    """The template budget from the app's settings (or the defaults outside an app)."""
    config = current_app.config if has_app_context() else {}
    return bounded.Budget(seconds=float(config.get("TEMPLATE_RENDER_SECONDS", DEFAULT_SECONDS)),
                          memory_mb=int(config.get("TEMPLATE_RENDER_MEMORY_MB", DEFAULT_MEMORY_MB)),
                          total_seconds=float(config.get("TEMPLATE_BATCH_SECONDS", DEFAULT_BATCH_SECONDS)))


def _budget_message(exc: bounded.OverBudget, limits: bounded.Budget) -> str:
    if exc.reason == "time":
        return (f"the template took longer than {limits.seconds:g} s to render (the limit for one letter); "
                "look for a loop that runs too long or a number or text that grows too large")
    if exc.reason == "total_time":
        return f"rendering the letters took longer than {limits.total_seconds:g} s in all; generate fewer at once"
    if exc.reason == "memory":
        return (f"the template needs more than {limits.memory_mb} MB of memory to render (the limit for one "
                "letter); look for text or lists that grow too large")
    if exc.reason == "error":
        return f"the template could not be rendered ({exc.detail})"
    return (f"the template could not be rendered: the rendering process stopped ({exc.detail}), most likely because "
            f"it needed more than {limits.memory_mb} MB of memory")


def render_many(sources: Sequence[str], contexts: Sequence[dict], limits: bounded.Budget | None = None) -> list[list[str]]:
    """Render every source against every context in one worker process, within the budget.

    Returns one list of texts (one per source) per context. The first refusal raises
    LetterTemplateError with `part` (which source, when known) and `item` (which context).
    """
    limits = limits or budget()
    results: list[list[str]] = []
    with closing(bounded.run(_render_job, tuple(sources), list(contexts), limits)) as runs:
        try:
            for index, outcome in runs:
                if outcome[0] == "error":
                    _, part, message, line = outcome
                    raise LetterTemplateError(message, line, part=part, item=index)
                results.append(outcome[1])
        except bounded.OverBudget as exc:
            raise LetterTemplateError(_budget_message(exc, limits), item=exc.index) from exc
    return results


def render(source: str, context: dict) -> str:
    """Render one template string, raising LetterTemplateError with the line on failure."""
    return render_many([source], [context])[0][0]


def _day(value: dt.date | None) -> str | None:
    return formatting.format_date(value) if value else None


def _money(whose: str, amount) -> str | None:
    """An AUM for a letter; an infinite or not-a-number amount is refused, never printed."""
    if not amount:
        return None
    try:
        return formatting.format_money(amount)
    except formatting.AmountError as exc:
        raise LetterTemplateError(f"the AUM of {whose} is not a finite number ({amount}); "
                                  "correct it in Admin → Investors") from exc


def addressee_record(block: dict | None) -> Record:
    """The addressee block as template data: name, title, company, address, language."""
    return Record("addressee", {key: (block or {}).get(key) for key in ("name", "title", "company", "address",
                                                                       "language")})


def letter_context(engagement, sender, last_letter_date: dt.date | None = None, addressee: dict | None = None) -> dict:
    """Plain data a template may use; nothing here exposes the database."""
    company = engagement.company
    campaign = engagement.campaign
    signatories = [Record("signatory", {"name": i.name, "aum": _money(i.name, i.aum_usd)}) for i in campaign.signatories]
    total_aum = campaign.signatories_aum_usd
    context = {
        "company": Record("company", {
            "name": company.name, "isin": company.isin, "country": company.country, "sector": company.sector,
            "address": getattr(company, "address", None)}),
        "engagement": Record("engagement", {
            "stage": engagement.stage_label,
            "owner": engagement.owner.name if engagement.owner else None,
            "opened_on": _day(engagement.opened_on),
            "last_letter_date": _day(last_letter_date),
        }),
        "campaign": Record("campaign", {
            "name": campaign.name,
            "expectations": [Record("expectation", dict(e)) for e in campaign.expectations or []],
            "call_to_action": campaign.call_to_action,
            "call_to_action_url": campaign.call_to_action_url,
            "letterhead": getattr(campaign, "letterhead", None),
        }),
        "signatories": signatories,
        "signatories_aum": _money("the co-signatories together", total_aum),
        "sender": Record("sender", {"name": sender.name if sender else None, "email": sender.email if sender else None}),
        "today": formatting.format_date(clock.today()),
    }
    if addressee:
        context["addressee"] = addressee_record(addressee)
    return {key: value for key, value in context.items() if value not in (None, "", [])}


#: The "today" of the sample data; every other sample date is counted back from it.
SAMPLE_TODAY = dt.date(2026, 3, 2)
#: How long before the sample today the sample engagement was opened and its last letter sent.
SAMPLE_OPENED_DAYS_AGO = 60
SAMPLE_LAST_LETTER_DAYS_AGO = 30


def sample_context(today: dt.date | None = None) -> dict:
    """The shape of letter_context() with every value present, for checks and the editor's preview.

    The dates tell one story: the engagement was opened, then a letter was sent, then comes
    `today` (SAMPLE_TODAY by default; the preview passes the real today), so a template reading
    "our letter of {{ engagement.last_letter_date }}" never quotes a date after its own.
    """
    today = today or SAMPLE_TODAY
    opened = today - dt.timedelta(days=SAMPLE_OPENED_DAYS_AGO)
    last_letter = today - dt.timedelta(days=SAMPLE_LAST_LETTER_DAYS_AGO)
    return {
        "company": Record("company", {"name": "Example Holdings Ltd", "isin": "XS0000000009", "country": "CN",
                                      "sector": "Electronics", "address": "1 Example Road\nShenzhen"}),
        "engagement": Record("engagement", {"stage": "Mapping requested", "owner": "A. Analyst",
                                            "opened_on": formatting.format_date(opened),
                                            "last_letter_date": formatting.format_date(last_letter)}),
        "campaign": Record("campaign", {
            "name": "Example campaign",
            "expectations": [Record("expectation", {"key": "map", "title": "Map the value chain", "text": "Map it."})],
            "call_to_action": "Sign the Call to Action.",
            "call_to_action_url": "https://example.org/call-to-action",
            "letterhead": "Example Investors\n1 Example Street",
        }),
        "signatories": [Record("signatory", {"name": "Example Pension Fund", "aum": "US$1.00 billion"})],
        "signatories_aum": "US$1.00 billion",
        "sender": Record("sender", {"name": "A. Analyst", "email": "analyst@example.org"}),
        "today": formatting.format_date(today),
        "addressee": Record("addressee", {"name": "Jordan Example", "title": "Head of Investor Relations",
                                          "company": "Example Holdings Ltd", "address": "1 Example Road\nShenzhen",
                                          "language": "en"}),
    }


def sample_cover_context(today: dt.date | None = None) -> dict:
    """What a campaign's cover note may use: the sample letter data plus the letter being sent."""
    return {**sample_context(today), "letter": Record("letter", {"subject": "Investor expectations",
                                                                  "reference": "ENG-42"})}


#: The sample data on SAMPLE_TODAY, to check a template before saving.
SAMPLE_CONTEXT = sample_context()

#: What a campaign's cover note may use: the sample letter data plus the letter being sent.
SAMPLE_COVER_CONTEXT = sample_cover_context()

#: The cover note of a campaign that has not written its own.
DEFAULT_COVER_NOTE = """Dear {{ addressee.name }},

Please find attached our letter "{{ letter.subject }}" on behalf of the signatories of the {{ campaign.name }} engagement.

We would be grateful for your reply to this address; please keep the reference [{{ letter.reference }}] in the subject.

Yours sincerely,
{{ sender.name }}
"""


def check_template(source: str) -> None:
    """Raise LetterTemplateError for a syntax error, unknown variable or sandbox violation."""
    render(source, SAMPLE_CONTEXT)


def check_templates(*sources: str) -> list[str]:
    """Render several sources (subject, body) against the sample data in one worker; the texts."""
    return render_many(sources, [SAMPLE_CONTEXT])[0]
