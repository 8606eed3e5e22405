"""Read an HTML form as a browser would submit it, for the load test's simulated users.

Stdlib only (html.parser): the load test fills the forms of the pages it gets rather than
hard-coding their fields, so it keeps working when a template changes.
"""

from __future__ import annotations

import datetime as dt
from html.parser import HTMLParser


class _Forms(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.forms: list[dict] = []
        self._form = None
        self._select = None
        self._textarea = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self._form = {"action": a.get("action") or "", "method": (a.get("method") or "get").lower(), "fields": []}
            self.forms.append(self._form)
        elif self._form is None:
            return
        elif tag == "input" and a.get("name"):
            self._form["fields"].append({"tag": "input", "type": (a.get("type") or "text").lower(), "name": a["name"],
                                         "value": a.get("value") or "", "checked": "checked" in a})
        elif tag == "select" and a.get("name"):
            self._select = {"tag": "select", "name": a["name"], "options": [], "selected": None}
            self._form["fields"].append(self._select)
        elif tag == "option" and self._select is not None:
            value = a.get("value") or ""
            self._select["options"].append(value)
            if "selected" in a:
                self._select["selected"] = value
        elif tag == "textarea" and a.get("name"):
            self._textarea = {"tag": "textarea", "name": a["name"], "value": ""}
            self._form["fields"].append(self._textarea)

    def handle_data(self, data):
        if self._textarea is not None:
            self._textarea["value"] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def find_form(html: str, action_endswith: str) -> dict | None:
    parser = _Forms()
    parser.feed(html)
    for form in parser.forms:
        if form["method"] == "post" and form["action"].split("?")[0].split("#")[0].endswith(action_endswith):
            return form
    return None


def fill(form: dict, text: str = "Load test", choose=None, **overrides) -> dict:
    """The data a user submits: hidden values kept, each select chosen by `choose(name, options)` or as a
    browser does (the selected option, else the first), each radio group its checked or last option,
    dates today, empty text fields filled with `text`."""
    data: dict[str, str] = {}
    radios: dict[str, list[str]] = {}
    for field in form["fields"]:
        name = field["name"]
        if field["tag"] == "select":
            options = field["options"]
            picked = choose(name, [o for o in options if o]) if choose else None
            if picked is None:  # as a browser: the selected option, else the first (which may be empty)
                picked = field["selected"] if field["selected"] is not None else (options[0] if options else "")
            data[name] = picked
        elif field["tag"] == "textarea":
            data[name] = field["value"].strip() or text
        elif field["type"] == "radio":
            radios.setdefault(name, []).append(field["value"])
            if field["checked"]:
                data[name] = field["value"]
        elif field["type"] in ("hidden",):
            data[name] = field["value"]
        elif field["type"] == "date":
            data[name] = field["value"] or dt.date.today().isoformat()
        elif field["type"] in ("text", "search", "email", "url", "number"):
            data[name] = field["value"] or ("" if field["type"] in ("url", "number", "email") else text)
        elif field["type"] == "checkbox" and field["checked"]:
            data[name] = field["value"] or "y"
    for name, values in radios.items():
        data.setdefault(name, values[-1])
    data.update(overrides)
    return data
