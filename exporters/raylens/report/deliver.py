"""Where a report goes besides stdout: dated files written atomically, and webhook notifications.

Files are named ``raylens-report_<period>_by-<dimensions>.<ext>`` (``raylens-report_2026-06_by-project.csv``),
so a monthly timer builds an archive and a re-run of the same period replaces its file whole: each is
written to a temporary file in the same folder, flushed to disk, then renamed over the old one, so a
reader never sees half a report.

Notifications are one JSON POST per URL. ``slack`` (the default) is the incoming-webhook format
Slack, Mattermost, Rocket.Chat and Google Chat accept: ``{"text": ...}`` with the table in a code
block (chat apps do not render Markdown tables). ``json`` is for your own receivers: the Markdown
and the full JSON report. Failed posts are retried (connection errors, HTTP 429 and 5xx) three times.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import requests

from raylens.report.model import Report
from raylens.report.render import render_markdown, render_table, report_dict, title

EXTENSIONS = {"table": "txt", "csv": "csv", "json": "json", "markdown": "md"}
NOTIFY_FORMATS = ("slack", "json")
SLACK_TEXT_LIMIT = 39_000  # Slack truncates message text at 40,000 characters
ATTEMPTS = 3


class NotifyError(RuntimeError):
    """A webhook did not accept the report after retries."""


def report_stem(report: Report) -> str:
    label = report.interval.label.replace("..", "_to_").replace(":", "")
    if report.interval.running:
        label += "_to-date"
    return f"raylens-report_{label}_by-{'-'.join(report.dimensions)}"


def write_atomically(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("w", encoding="utf-8", newline="") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    temporary.replace(path)
    return path


def describe_url(url: str) -> str:
    """The URL without path or credentials, for logs and the audit trail (webhook paths hold secrets)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def notification(report: Report, notify_format: str) -> dict[str, object]:
    if notify_format == "slack":
        table = render_table(report)
        if len(table) > SLACK_TEXT_LIMIT:
            table = table[:SLACK_TEXT_LIMIT] + "\n... (truncated; see the report files)"
        return {"text": f"*{title(report)}*\n```\n{table}```"}
    return {
        "kind": "raylens.report.notification",
        "format_version": 1,
        "title": title(report),
        "markdown": render_markdown(report),
        "report": report_dict(report),
    }


def notify(
    url: str,
    report: Report,
    notify_format: str,
    timeout: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    payload = notification(report, notify_format)
    problem = ""
    for attempt in range(ATTEMPTS):
        try:
            response = requests.post(url, json=payload, timeout=timeout)
        except requests.exceptions.RequestException as error:
            problem = type(error).__name__
        else:
            if response.status_code < 300:
                return
            problem = f"HTTP {response.status_code}"
            if response.status_code != 429 and response.status_code < 500:
                break  # the receiver rejected the message; sending it again will not help
        if attempt + 1 < ATTEMPTS:
            sleep(2**attempt)
    raise NotifyError(f"the webhook at {describe_url(url)} did not accept the report: {problem}")
