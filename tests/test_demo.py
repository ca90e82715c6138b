"""The demo's stage runner (resume, failure) and its report, on hand-made folders."""

import json
import os
import sys

import pytest

from slmjax.demo import report
from slmjax.demo.stages import Stage, StageError, run_stages


def _touch_cmd(path):
    return [sys.executable, "-c", f"open({str(path)!r}, 'a').write('x')"]


def test_stages_run_in_order_and_a_rerun_skips_them(tmp_path):
    log = []
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    stages = [Stage("a", "first", 1, lambda: [_touch_cmd(a)]),
              Stage("b", "second", 1, lambda: [_touch_cmd(b)])]
    t = run_stages(stages, str(tmp_path), log=log.append)
    assert set(t) == {"a", "b"} and a.read_text() == "x" and b.read_text() == "x"
    assert any("ETA" in line for line in log)
    t = run_stages(stages, str(tmp_path), log=log.append)
    assert t == {"a": "skipped", "b": "skipped"}
    assert a.read_text() == "x"  # not run again


def test_a_failed_stage_stops_the_chain_and_is_retried(tmp_path):
    after = tmp_path / "after.txt"
    fail = [sys.executable, "-c", "raise SystemExit(3)"]
    stages = [Stage("bad", "fails", 1, lambda: [fail]),
              Stage("after", "never reached", 1, lambda: [_touch_cmd(after)])]
    with pytest.raises(StageError, match="stage 'bad' failed \\(exit 3\\)"):
        run_stages(stages, str(tmp_path), log=lambda s: None)
    assert not after.exists()
    assert not (tmp_path / ".stages" / "bad.json").exists()
    stages[0] = Stage("bad", "fixed", 1, lambda: [])
    assert run_stages(stages, str(tmp_path), log=lambda s: None)["after"] != "skipped"
    assert after.exists()


def _run(root, name, n, d, loss, tsc):
    wd = root / "runs" / name
    (wd / "zeroshot" / "10").mkdir(parents=True)
    (wd / "run.json").write_text(json.dumps(dict(
        run_id=name, n_params=n, n_params_nonemb=n - 100, tokens=d, steps=10, status="completed",
        final_test_loss=loss, unique_tokens=10 * d, epochs=0.1,
        flops_per_token={"6n": 6 * n, "6n_attn": 7 * n})))
    (wd / "metrics.jsonl").write_text(json.dumps({"step": 10, "tokens_seen": d, "test_loss": loss}) + "\n")
    head = {"tsc": {"accuracy": tsc, "ci95": [tsc - 0.05, tsc + 0.05], "n_items": 150}}
    tasks = {"tsc": {"n_truncated": 150, "n_files": 300}, "swuggy_dev": {"n_truncated": 0}}
    (wd / "zeroshot" / "10" / "scores.json").write_text(json.dumps(
        {"headline": head, "context": 128, "tasks": tasks}))
    (wd / "config.json").write_text(json.dumps({"data": {"seq_len": 128}}))


def test_report_states_runs_law_and_chance(tmp_path):
    for i, n in enumerate((1000, 2000, 4000)):
        for j, r in enumerate((2, 8, 20)):
            _run(tmp_path, f"m{n}_r{r}", n, n * r, 3.0 - 0.1 * i - 0.1 * j, 0.5 + 0.05 * (i + j))
    (tmp_path / "corpus").mkdir()
    rows = [{"path": "a.wav", "voice": v, "duration": 1800.0}
            for v in ("espeak:en-us+m3:s166:p37", "espeak:en-us+m3:s170:p45", "espeak:en+f2:s172:p66")]
    (tmp_path / "corpus" / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "fit").mkdir()
    fit = {"approach3": {"vp": {
        "params": {k: {"value": v, "lo": v * 0.9, "hi": v * 1.1}
                   for k, v in dict(E=1.5, A=10.0, B=20.0, alpha=0.3, beta=0.2).items()},
        "allocation": {"a": {"value": 0.4, "lo": 0.35, "hi": 0.45},
                       # an infinite limit, as fit.json writes it (a string)
                       "b": {"value": 0.6, "lo": 0.55, "hi": "inf", "n_ok": 9, "n": 9}}}},
           "downstream": {"tsc": {"gamma": {"value": 0.02, "lo": 0.01, "hi": 0.03},
                                  "bootstrap": "runs and the 150 tsc items all runs share"},
                          "sblimp": {"skipped": "no run above chance (0.5) by a 95% interval"}},
           "diagnostics": [{"check": "Huber fit at bounds", "flag": False, "detail": "none"},
                           {"check": "bootstrap replicates at bounds", "flag": True,
                            "detail": "8.8% of replicates"}]}
    (tmp_path / "fit" / "fit.json").write_text(json.dumps(fit))
    text = open(report.write_demo_report(str(tmp_path))).read()
    assert "- Huber fit at bounds: no (none)\n- bootstrap replicates at bounds: **flagged** (8.8% of replicates)" in text
    assert "3 synthetic stories read by 2 voices (espeak:en+f2, espeak:en-us+m3;" in text
    assert "1.50 hours of 16 kHz audio" in text
    assert "9 runs, 3 sizes (1,000, 2,000, 4,000 parameters)" in text
    assert "| this demo | 1.5 [1.35, 1.65] | 10 [9, 11] | 20 [18, 22] | 0.3 [0.27, 0.33] | 0.2 [0.18, 0.22]" in text
    assert "| 0.4 [0.35, 0.45] | 0.6 [0.55, inf] |" in text
    # a downstream task skipped by the fit is named with its reason, not left out
    assert ("Accuracy envelope vs compute, Q ~ C^gamma (intervals include the noise of the "
            "benchmark items the runs share):\n- sBLIMP (macro): not fitted: no run above chance (0.5) by a 95% interval (paper, "
            "speech: 0.021)\n- tSC: gamma = 0.02 [0.01, 0.03] (paper, speech: 0.025)") in text
    assert "| paper (HuBERT units) | 1.73 | 13.9 | 39.8 | 0.25 | 0.24 | 0.49 | 0.51 |" in text
    assert "| m4000_r20 | 4,000 | 80,000 | 0.1 | 2.6000 | - | - | - | 70.0 [65.0, 75.0] |" in text
    # best tSC 70% with interval [65, 75] is above chance; the others have no scores
    assert ("Beats chance (the best run's 95% interval above 50%; the best of the runs, so a "
            "selection) on: tSC.") in text
    assert ("Every file was scored in a context of 128 units; longer files keep only their last "
            "units, and the story or sentence before them could not inform the choice: 150 of 300 "
            "tsc files.") in text
    assert "- Models: 1K-4K parameters and a context of 128 units" in text
    # Runs are listed by N, then D (not by name: m1000_r20 before m1000_r8 alphabetically).
    assert text.index("| m1000_r8 |") < text.index("| m1000_r20 |") < text.index("| m2000_r2 |")
    assert not os.path.exists(tmp_path / "report.md.tmp")


def test_scores_below_chance_are_explained_by_type_and_convention():
    def scores(acc, hi, types, total):
        rows = [{"metric": "macro", "accuracy": acc}] + [
            {"metric": f"type/{t}", "accuracy": a} for t, a in types.items()]
        return {"headline": {"sblimp": {"benchmark": "sblimp_dev", "metric": "macro",
                                        "accuracy": acc, "ci95": [acc - 0.05, hi]}},
                "tasks": {"sblimp_dev": {"conventions": {
                    "mean": rows, "sum": [{"metric": "macro", "accuracy": total}]}}}}
    runs = [("runs/a", {}, scores(0.45, 0.499, {"binding": 0.5, "quantifiers": 0.3, "ellipsis": 0.4,
                                               "island_effects": 0.2}, 0.55)),
            ("runs/b", {}, scores(0.42, 0.47, {"quantifiers": 0.25, "ellipsis": 0.5}, 0.527)),
            ("runs/c", {}, scores(0.48, 0.52, {"quantifiers": 0.1}, 0.5))]   # interval reaches 50%
    assert report._below_chance_lines(runs) == [
        "- sBLIMP (macro) is below chance with a 95% interval in 2 of 3 runs; lowest 42.0% (b), "
        "most of all on quantifiers (25%); the same run scores 52.7% with the summed "
        "log-probability instead of the mean per unit: a ranking that flips with the convention "
        "points to the two sides' different lengths, not to anything learnt about the task."]
    assert report._below_chance_lines(runs[2:]) == []
    # below chance under both conventions: no flip to speak of (types at 50% are not "below")
    runs = [("runs/d", {}, scores(0.40, 0.45, {"quantifiers": 0.3, "binding": 0.5}, 0.41))]
    assert report._below_chance_lines(runs) == [
        "- sBLIMP (macro) is below chance with a 95% interval in 1 of 1 runs; lowest 40.0% (d), "
        "most of all on quantifiers (30%); the same run scores 41.0% with the summed "
        "log-probability instead of the mean per unit."]


def test_a_best_score_without_an_interval_is_not_called_below_chance():
  """A headline whose ci95 is null (too few items of some type) has no interval to set against
  chance: the report gives the score and the reason, not 'includes or is below chance'."""
  note = "not estimable: a bootstrap stratified by type needs at least 2 items of every type"
  best = {t: None for t in report.TASK_TITLES}
  best["sblimp"] = ("m1", {"accuracy": 0.75, "ci95": None, "ci95_note": note, "n_items": 12})
  best["tsc"] = ("m2", {"accuracy": 0.7, "ci95": [0.55, 0.82], "n_items": 150})
  lines = report._chance_lines(best, [1000], "")
  assert f"- sBLIMP (macro): best 75.0% (m1, n=12 items); no 95% interval ({note})." in lines
  assert "- tSC: best 70.0% (m2, n=150 items); 95% interval above chance (50%)." in lines


def test_a_folder_made_with_other_settings_is_refused(tmp_path):
    from slmjax.demo.stages import check_settings
    out = str(tmp_path)
    now = {"hours": 36.0, "grid_sha256": "abc"}
    assert check_settings(out, now) is None                  # new folder: settings recorded
    assert check_settings(out, now) is None                  # same settings: go on
    msg = check_settings(out, {"hours": 16.0, "grid_sha256": "abc"})
    assert msg and "hours: 36.0 -> 16.0" in msg and "use another --out" in msg
    old = tmp_path / "old"
    (old / ".stages").mkdir(parents=True)
    (old / ".stages" / "corpus.json").write_text("{}")      # stages but no settings: older slmjax
    assert "no record of their settings" in check_settings(str(old), now)
    # Same flags, other code (an edited source file, or a folder from before the digest existed).
    coded = tmp_path / "coded"
    assert check_settings(str(coded), {**now, "code_sha256": "c1"}) is None
    msg = check_settings(str(coded), {**now, "code_sha256": "c2"})
    assert msg and "made by other slmjax code" in msg and "c1 -> c2" in msg
    assert "made by other slmjax code" in check_settings(out, {**now, "code_sha256": "c1"})


def test_the_code_digest_follows_every_source_file(tmp_path):
    from slmjax.demo.stages import code_digest
    for rel in ("slmjax/a.py", "slmjax/sub/b.py", "configs/train.py", "slmjax/notes.txt"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    first = code_digest(str(tmp_path))
    (tmp_path / "slmjax" / "notes.txt").write_text("not code")
    assert code_digest(str(tmp_path)) == first
    for rel in ("slmjax/sub/b.py", "configs/train.py"):
        (tmp_path / rel).write_text(rel + " edited")
        assert code_digest(str(tmp_path)) != first, rel
        (tmp_path / rel).write_text(rel)
        assert code_digest(str(tmp_path)) == first


def test_a_folder_holding_other_files_is_refused(tmp_path):
    from slmjax.demo.stages import check_settings
    (tmp_path / "runs" / "s20m_d1e9").mkdir(parents=True)       # e.g. another sweep's root
    (tmp_path / "runs" / "s20m_d1e9" / "run.json").write_text("{}")
    msg = check_settings(str(tmp_path), {"hours": 36.0})
    assert msg and "not made by the demo" in msg and "runs" in msg and "\n" not in msg
    assert not (tmp_path / ".stages" / "settings.json").exists()   # nothing recorded there
    interrupted = tmp_path / "interrupted"                        # only an empty .stages/ yet
    (interrupted / ".stages").mkdir(parents=True)
    assert check_settings(str(interrupted), {"hours": 36.0}) is None


@pytest.mark.parametrize("text", ['[1, 2]', '{"hours": 3', '"s"'])
def test_a_settings_file_the_demo_did_not_write_is_refused_in_one_line(tmp_path, text):
    from slmjax.demo.stages import check_settings
    (tmp_path / ".stages").mkdir()
    (tmp_path / ".stages" / "settings.json").write_text(text)
    msg = check_settings(str(tmp_path), {"hours": 36.0})
    assert msg and "settings.json" in msg and "\n" not in msg


def test_an_out_path_that_is_a_file_is_one_line(tmp_path):
    import subprocess
    afile = tmp_path / "afile"
    afile.write_text("x")
    proc = subprocess.run([sys.executable, "-m", "slmjax.demo", f"--out={afile}"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("slmjax demo: ") and str(afile) in lines[0]
    assert afile.read_text() == "x"
