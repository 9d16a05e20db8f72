"""The CPU benchmark (`python -m scripts.bench`, scripts/bench/cpu.py): its plan, the report's ratio arithmetic and
goal wording, AST's reach estimate, and cases on toy models run in-process and through the subprocess plumbing.
Times are never asserted."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from scripts.bench import cpu as bench


def row(model, precision, wall, cpu, seconds=10, batch=1, threads=2, status="ok"):
    return {
        "model": model, "precision": precision, "seconds": seconds, "batch": batch, "threads": threads,
        "frames": 1024, "status": status, "reason": "why" if status != "ok" else "", "wall": wall, "cpu": cpu,
        "runs": 3, "warmup_only": False, "peak_mb": 500.0, "note": "",
    }  # fmt: skip


def test_speedup_is_ast_fp32_time_over_the_row_time_at_the_same_size():
    rows = [
        row("ast", "fp32", wall=2.0, cpu=4.0),
        row("small", "fp32", wall=0.25, cpu=0.5),
        row("ast", "fp32", wall=16.0, cpu=30.0, batch=8),
        row("small", "fp32", wall=4.0, cpu=6.0, batch=8),
        row("small", "fp32", wall=1.0, cpu=1.0, seconds=60),  # no AST at 60 s in this run
    ]
    assert bench.speedups(rows, rows[1]) == (8.0, 8.0)
    assert bench.speedups(rows, rows[3]) == (4.0, 5.0)
    assert bench.speedups(rows, rows[4]) is None
    table = bench.markdown_table(rows)
    assert len(table) == 2 + len(rows)
    assert "| 8.00x | 8.00x |" in table[3] and "| 4.00x | 5.00x |" in table[5]
    assert "| - | - |" in table[6]
    assert all(line.count("|") == table[0].count("|") for line in table)


def test_rows_that_did_not_run_say_why_and_keep_the_columns():
    rows = [row("ast", "fp32", 0, 0, seconds=600, status="skipped"), row("small", "onnx", 0, 0, status="not available")]
    table = bench.markdown_table(rows)
    assert "skipped: why" in table[2] and "not available: why" in table[3]
    assert all(line.count("|") == table[0].count("|") for line in table)


def goal(lines, prefix):
    return next(line for line in lines if line.startswith(f"- {prefix}"))


def test_goals_compute_the_issue_ratios_and_say_met_or_not():
    rows = [
        row("ast", "fp32", wall=3.0, cpu=6.0),
        row("ast", "bf16", wall=1.5, cpu=3.0),
        row("ast", "bf16-autocast", wall=2.0, cpu=4.0),
        row("small", "fp32", wall=0.25, cpu=0.5),  # 12x: met
        row("small", "bf16", wall=0.3, cpu=0.6),
        row("small", "bf16-autocast", wall=0.2, cpu=0.4),
        row("small", "int8", wall=0.1, cpu=0.3),  # the fastest: 30x AST fp32
        row("ast", "fp32", wall=16.0, cpu=32.0, batch=8),
        row("small", "fp32", wall=2.0, cpu=4.0, batch=8),  # 8x: not met
        row("small", "fp32", wall=0.01, cpu=0.01, threads=1),  # other thread count: not mixed in
    ]
    lines = bench.goals_report(rows, {"avx512_bf16"}, threads=2)
    assert goal(lines, "1a").endswith("12.00x wall (12.00x CPU time), DASS-small fp32 vs AST fp32: met")
    assert goal(lines, "1b").endswith("8.00x wall (8.00x CPU time), DASS-small fp32 vs AST fp32: not met (needs 10x)")
    assert "30.00x wall (20.00x CPU time), DASS-small int8 vs AST fp32: met" in goal(lines, "2a")
    # best bf16 against best bf16: 1.5 / 0.2
    assert "7.50x wall (7.50x CPU time), DASS-small bf16-autocast vs AST bf16: met" in goal(lines, "2b ")
    assert "10.00x wall (10.00x CPU time), DASS-small bf16-autocast vs AST bf16-autocast: met" in goal(lines, "2b'")
    assert not any("does not apply" in line for line in lines)

    no_bf16 = bench.goals_report(rows, {"avx2"}, threads=2)
    assert "does not apply here" in goal(no_bf16, "2a") and "does not apply here" in goal(no_bf16, "2b ")
    missing = bench.goals_report(rows[:3], {"avx2"}, threads=2)
    assert "not measured in this run" in goal(missing, "1a")


def test_plan_puts_ast_fp32_first_and_batches_only_at_10_s():
    args = bench.parse_args(["--seconds", "10", "60", "--batch", "1", "8", "--threads", "2"])
    cases = bench.plan(args)
    sizes = sorted({(case.seconds, case.batch) for case in cases})
    assert sizes == [(10, 1), (10, 8), (60, 1)]
    for size in sizes:
        group = [case for case in cases if (case.seconds, case.batch) == size]
        assert (group[0].model, group[0].precision) == ("ast", "fp32")
        assert {case.precision for case in group if case.model == "ast"} == {"fp32", "bf16", "bf16-autocast", "int8"}
        assert {case.precision for case in group if case.model == "cnn14"} == {"fp32"}
        assert {case.precision for case in group if case.model == "small"} == set(bench.PRECISIONS)
    chosen = bench.plan(bench.parse_args(["--precisions", "onnx", "fp32", "--models", "ast", "small", "--quick"]))
    assert [(c.model, c.precision) for c in chosen] == [("ast", "fp32"), ("small", "fp32"), ("small", "onnx")]


def test_input_lengths_follow_the_feature_extractors():
    assert bench.input_frames(10) == 1024  # both extractors pad 10 s (998 kaldi frames) to AST's 1024
    assert bench.input_frames(60) == 5998 and bench.input_frames(600) == 59998


@pytest.mark.parametrize("frames", [1024, 1500])
def test_ast_token_count_matches_transformers(frames):
    from transformers import ASTConfig, ASTModel

    config = ASTConfig(max_length=frames, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    with torch.inference_mode():
        tokens = ASTModel(config).embeddings(torch.zeros(1, frames, 128)).shape[1]
    assert bench.ast_estimate(frames, 1, tiny=True)["tokens"] == tokens


def test_ast_is_skipped_where_its_estimated_time_is_out_of_reach():
    rate = 1e11  # flops per second, as if measured earlier in the run
    assert bench.ast_skip_reason(1024, 1, 2, rate, max_seconds=300, tiny=False) is None
    reason = bench.ast_skip_reason(59998, 1, 2, rate, max_seconds=300, tiny=False)
    assert reason.startswith("needs ~") and "TFLOP" in reason and "--max-case-seconds 300" in reason
    # before AST is measured, an optimistic assumed rate: 600 s is still out of reach, 10 s is not
    assert "assumed" in bench.ast_skip_reason(59998, 1, 2, None, max_seconds=300, tiny=False)
    assert bench.ast_skip_reason(1024, 1, 2, None, max_seconds=300, tiny=False) is None


def test_timed_runs_keep_to_the_budget():
    calls = []
    result = bench.timed_runs(lambda: calls.append(1), repeats=3, budget=100.0)
    assert len(calls) == 4 and result["runs"] == 3 and not result["warmup_only"]

    def slow():
        calls.append(1)
        start = bench.time.perf_counter()
        while bench.time.perf_counter() - start < 0.02:
            pass

    calls.clear()
    result = bench.timed_runs(slow, repeats=3, budget=0.01)
    assert len(calls) == 1 and result["runs"] == 1 and result["warmup_only"]
    assert result["wall"] >= 0.02


@pytest.mark.parametrize(
    "model, precision", [("ast", "fp32"), ("ast", "bf16"), ("small", "bf16-autocast"), ("small", "int8")]
)
def test_a_tiny_case_runs_in_process(model, precision):
    spec = {"model": model, "precision": precision, "seconds": 10, "batch": 1, "threads": 1, "repeats": 1,
            "budget": 10.0, "tiny": True}  # fmt: skip
    result = bench.run_case(spec)
    assert result["runs"] == 1 and result["wall"] > 0 and result["cpu"] >= 0 and result["peak_mb"] > 0
    assert ("scan" in result["note"]) == (model == "small")


def test_a_case_runs_in_its_own_process_and_reports_json():
    args = bench.parse_args(["--tiny", "--quick"])
    spec = {"model": "small", "precision": "fp32", "seconds": 10, "batch": 2, "threads": 1, "repeats": 1,
            "budget": 10.0, "tiny": True}  # fmt: skip
    result = bench.run_child(args, "case", spec)
    assert result["status"] == "ok" and result["runs"] == 1 and result["peak_mb"] > 0


def test_missing_packages_make_rows_that_name_the_install(monkeypatch, tmp_path):
    real_find_spec = importlib.util.find_spec
    hidden = {"onnxruntime", "panns_inference"}
    def find_spec(name, *rest):
        return None if name in hidden else real_find_spec(name, *rest)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    monkeypatch.delitem(sys.modules, "panns_inference", raising=False)
    with pytest.raises(bench.Unavailable, match=r"transformers-dass\[bench\]"):
        bench.load_cnn14_class()
    args = bench.parse_args(["--tiny"])
    case = bench.Case("small", "onnx", 10, 1, 1)
    result = bench.onnx_case(args, case, {}, str(tmp_path), {}, [])
    assert result["status"] == "not available" and "transformers-dass[bench]" in result["reason"]


@pytest.mark.skipif(importlib.util.find_spec("panns_inference") is None, reason="panns-inference not installed")
def test_cnn14_loads_without_panns_package_init(monkeypatch):
    monkeypatch.delitem(sys.modules, "panns_inference", raising=False)
    cnn14 = bench.load_cnn14_class()
    assert cnn14.__name__ == "Cnn14" and "panns_inference.config" not in sys.modules


def test_onnx_above_60_s_is_skipped_unless_asked_for(tmp_path):
    case = bench.Case("small", "onnx", 600, 1, 2)
    rows, _ = bench.run_all(bench.parse_args(["--seconds", "600"]), [case], str(tmp_path))
    assert rows[0]["status"] == "skipped" and "--precisions onnx" in rows[0]["reason"]


def test_fp32_aten_runs_only_when_named_and_only_for_dass():
    default = bench.plan(bench.parse_args(["--quick"]))
    assert not any(case.precision == "fp32-aten" for case in default)
    chosen = bench.plan(bench.parse_args(["--quick", "--models", "ast", "small", "--precisions", "fp32", "fp32-aten"]))
    assert [(c.model, c.precision) for c in chosen] == [("ast", "fp32"), ("small", "fp32"), ("small", "fp32-aten")]


def test_speedup_against_ast_in_the_same_precision():
    rows = [
        row("ast", "fp32", wall=2.0, cpu=4.0),
        row("ast", "bf16", wall=1.0, cpu=2.0),
        row("small", "bf16", wall=0.25, cpu=0.25),
        row("small", "fp32-aten", wall=0.5, cpu=1.0),  # AST has no such precision
    ]
    assert bench.speedups(rows, rows[2], "bf16") == (4.0, 8.0)
    table = bench.markdown_table(rows)
    assert "| 8.00x | 16.00x | 4.00x | 8.00x |" in table[4]
    assert "| 4.00x | 4.00x | - | - |" in table[5]
    assert all(line.count("|") == table[0].count("|") for line in table)


def test_onnx_rows_are_compared_with_pytorch_fp32_logits_and_time():
    fp32, onnx = row("small", "fp32", wall=0.5, cpu=1.0), row("small", "onnx", wall=2.0, cpu=3.0)
    fp32["logits"], onnx["logits"] = [[0.0, 1.0]], [[0.0, 1.25]]
    other = row("medium", "onnx", wall=1.0, cpu=1.0)  # no fp32 row of DASS-medium: no comparison
    rows = [fp32, onnx, other]
    bench.compare_logits(rows)
    assert onnx["max_abs_diff"] == 0.25 and not any("logits" in r for r in rows)
    lines = bench.onnx_table(rows)
    assert len([line for line in lines if line.startswith("| DASS")]) == 1
    assert "| 0.500 | 2.000 | 4.00 | 1.000 | 3.000 | 3.00 | 2.5e-01 |" in lines[-2]
    assert bench.onnx_table(rows[:1]) == []


def test_timed_rounds_interleave_the_calls_and_run_exactly_the_repeats_without_budget():
    calls = []
    results = bench.timed_rounds([lambda: calls.append("a") or "A", lambda: calls.append("b") or "B"], repeats=2)
    assert calls == ["a", "b"] * 3
    assert [r["runs"] for r in results] == [2, 2] and [r["output"] for r in results] == ["A", "B"]
    calls.clear()
    result = bench.timed_runs(lambda: calls.append("long"), repeats=1, warmup=lambda: calls.append("short"))
    assert calls == ["short", "long"] and result["runs"] == 1 and not result["warmup_only"]


def test_fp32_aten_tiny_case_runs_in_process():
    from transformers_dass.model import fused_linear

    original = fused_linear._takes_onednn
    spec = {"model": "small", "precision": "fp32-aten", "seconds": 10, "batch": 1, "threads": 1, "repeats": 1,
            "budget": 10.0, "tiny": True}  # fmt: skip
    result = bench.run_case(spec)
    assert result["runs"] == 1 and "scan" in result["note"] and fused_linear._takes_onednn is original


def test_interleave_times_a_group_in_one_process(tmp_path):
    args = bench.parse_args(
        ["--tiny", "--quick", "--interleave", "--threads", "1", "--models", "ast", "small", "--precisions", "fp32",
         "bf16-autocast"]
    )  # fmt: skip
    rows, _ = bench.run_all(args, bench.plan(args), str(tmp_path))
    assert [(r["model"], r["precision"], r["status"]) for r in rows] == [
        ("ast", "fp32", "ok"), ("ast", "bf16-autocast", "ok"), ("small", "fp32", "ok"), ("small", "bf16-autocast", "ok")
    ]  # fmt: skip
    assert all(r["runs"] == 2 and r["peak_mb"] is None for r in rows) and not any("logits" in r for r in rows)
    assert "| - |" in bench.markdown_table(rows)[2]
