"""The plugins and policy commands."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from points.service import record_service


def write(tmp_path, data, name="config.json"):
    path = tmp_path / name
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return str(path)


def test_plugins_list(runner):
    result = runner.invoke(args=["plugins", "list"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.output.splitlines()]
    assert {"steward", "caps", "approval", "expiry", "catalog", "stars", "transfers"} <= set(names)


def test_policy_set_show_history(runner, tree, tmp_path):
    path = write(tmp_path, {"overall": {"day": 40}})
    result = runner.invoke(
        args=[
            "policy",
            "set",
            "longtan",
            "caps",
            "--file",
            path,
            "--lock",
            "overall",
            "--comment",
            "tighter",
        ]
    )
    assert result.exit_code == 0, result.output
    assert "version 1" in result.output
    shown = json.loads(
        runner.invoke(args=["policy", "show", "xizhaosi", "--plugin", "caps"]).output
    )
    assert shown["plugins"]["caps"]["config"]["overall"]["day"] == 40
    assert shown["plugins"]["caps"]["locked"] == ["overall"]
    history = runner.invoke(args=["policy", "history", "longtan", "caps"])
    assert (
        "v1" in history.output
        and "tighter" in history.output
        and "locked overall" in history.output
    )


def test_policy_set_refuses_bad_input_with_field_errors(runner, tree, tmp_path):
    result = runner.invoke(
        args=[
            "policy",
            "set",
            "longtan",
            "caps",
            "--file",
            write(tmp_path, {"overall": {"day": -3}}),
        ]
    )
    assert result.exit_code == 1
    assert "config.overall.day" in result.output
    result = runner.invoke(
        args=["policy", "set", "longtan", "lottery", "--file", write(tmp_path, {})]
    )
    assert result.exit_code == 1 and "lottery" in result.output
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    result = runner.invoke(args=["policy", "set", "longtan", "caps", "--file", str(bad)])
    assert result.exit_code == 1 and "cannot read JSON" in result.output


def test_policy_set_effective_from_a_date(runner, tree, tmp_path):
    path = write(tmp_path, {"overall": {"day": 40}})
    result = runner.invoke(
        args=["policy", "set", "longtan", "caps", "--file", path, "--effective-from", "2099-01-01"]
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(runner.invoke(args=["policy", "show", "longtan", "--plugin", "caps"]).output)
    assert shown["plugins"]["caps"]["config"]["overall"]["day"] == 100


def test_policy_preview(runner, volunteer, tmp_path):
    started = datetime.now(UTC) - timedelta(days=2)
    record_service(volunteer, "patrol", started, 240, actor="office:test")
    start = (started - timedelta(days=1)).strftime("%Y-%m-%d")
    end = (started + timedelta(days=1)).strftime("%Y-%m-%d")
    path = write(tmp_path, {"patrol": {"points_per_hour": 10}})
    result = runner.invoke(
        args=[
            "policy",
            "preview",
            "longtan",
            "steward",
            "--file",
            path,
            "--from",
            start,
            "--to",
            end,
        ]
    )
    assert result.exit_code == 0, result.output
    assert "王秀英" in result.output and "total" in result.output
    result = runner.invoke(
        args=[
            "policy",
            "preview",
            "longtan",
            "steward",
            "--file",
            path,
            "--from",
            start,
            "--to",
            end,
            "--json",
        ]
    )
    data = json.loads(result.output)
    assert (data["current_total"], data["draft_total"]) == (20, 40)
