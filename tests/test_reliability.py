"""Faults and bad input: recovery after a killed run, locks, paths, config errors.
docs/reliability.md lists every case tried and the test that covers it."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import REPO, TINY, dry_run_error, planned, snakemake, write_config
from diffcredit.config import ConfigError, deep_update, load_yaml
from diffcredit.plan import Plan
from diffcredit.status import load_plan


def sm_command(workdir, *args, configs=()):
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
            "--configfile", str(TINY), *map(str, configs), *args]


def sm_env():
    return {**os.environ, "PYTHONHASHSEED": "0", "DIFFCREDIT_OFFLINE": "1"}


def plan_in(workdir, configs):
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        return load_plan(REPO, [TINY, *configs])
    finally:
        os.chdir(cwd)


def partial_models(workdir, plan):
    return [p for k in plan.coalitions for p in (workdir / plan.model_dir(k)).parent.glob(".model.*.partial")]


def done_models(workdir, plan):
    return [k for k in plan.coalitions if (workdir / plan.model_dir(k) / "artifact.json").is_file()]


def running_models(workdir, plan):
    """Coalition models being trained: checkpoints in scratch, no finished model yet."""
    return [k for k in plan.coalitions
            if (workdir / plan.scratch_dir(k)).is_dir() and not (workdir / plan.model_dir(k) / "artifact.json").is_file()]


def kill_during_fine_tune(workdir, plan, configs, finished_before, unrecorded):
    """Start a run and SIGKILL its process group while a fine_tune job runs (it has
    written a checkpoint), after `finished_before` coalitions are done. With
    `unrecorded`, Snakemake is first stopped (SIGSTOP) and the running job is let
    finish, so its output exists while Snakemake never recorded it (what a kill
    between the two leaves)."""
    proc = subprocess.Popen(sm_command(workdir, "--cores", "1", configs=configs), cwd=REPO, env=sm_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    deadline = time.time() + 900
    try:
        while time.time() < deadline and proc.poll() is None:
            if len(done_models(workdir, plan)) >= finished_before and running_models(workdir, plan):
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the run ended before the kill point:\n" + proc.stdout.read()[-3000:]
        if unrecorded:
            os.kill(proc.pid, signal.SIGSTOP)
            while (running_models(workdir, plan) or partial_models(workdir, plan)) and time.time() < deadline:
                time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.mark.workflow
@pytest.mark.parametrize("finished_before,unrecorded,recovery", [
    (0, True, ["--rerun-incomplete"]),
    (3, True, ["--rerun-incomplete"]),
    (3, True, []),
    (1, False, ["--rerun-incomplete"]),
])
def test_documented_recovery_after_kill_finishes_the_run(tiny_run, tmp_path, finished_before, unrecorded, recovery):
    work = tmp_path / "work"
    shutil.copytree(tiny_run, work, symlinks=True)
    slow = write_config(tmp_path / "slow.yaml", {"fine_tune": {"training": {"steps": 40, "checkpoint_every": 10}}})
    plan = plan_in(work, [slow])
    kill_during_fine_tune(work, plan, [slow], finished_before, unrecorded)
    done = done_models(work, plan)
    assert finished_before + unrecorded <= len(done) < len(plan.coalitions)
    if unrecorded:  # the state that made Snakemake skip the rest of the run
        assert any((work / ".snakemake" / "incomplete").iterdir())
    kept = {k: (work / plan.model_dir(k) / "artifact.json").stat().st_mtime_ns for k in done}

    snakemake(work, "--unlock", configs=[slow])
    proc = snakemake(work, "--cores", "2", *recovery, configs=[slow])
    assert proc.returncode == 0
    assert len(done_models(work, plan)) == len(plan.coalitions)
    assert all((work / p).exists() for p in plan.targets())
    for k, mtime in kept.items():  # finished work is not redone
        assert (work / plan.model_dir(k) / "artifact.json").stat().st_mtime_ns == mtime
    assert "Nothing to be done" in snakemake(work, "--cores", "1", "-n", configs=[slow]).stdout


def files_under(folder: Path) -> set:
    return {p.relative_to(folder) for p in folder.rglob("*")}


@pytest.mark.workflow
def test_one_run_per_results_folder_and_odd_characters_in_its_path(tiny_run, tmp_path):
    # A space and shell metacharacters in the results path; two working directories.
    shared = tmp_path / "shared res;$(touch pwned)'&"
    shutil.copytree(tiny_run / "results-tiny", shared, symlinks=True)
    cfg = write_config(tmp_path / "shared.yaml", {
        "results": str(shared), "fine_tune": {"training": {"steps": 40, "checkpoint_every": 10}}})
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    first = subprocess.Popen(sm_command(a, "--cores", "1", configs=[cfg]), cwd=REPO, env=sm_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.time() + 600
        while not list((shared / "scratch").glob("*/step-*.pt")) and time.time() < deadline:  # a job runs
            assert first.poll() is None, first.stdout.read()[-3000:]
            time.sleep(0.01)
        os.kill(first.pid, signal.SIGSTOP)
        second = snakemake(b, "--cores", "1", configs=[cfg], check=False)
        assert second.returncode != 0
        assert f"is in use by pid {first.pid}" in second.stderr
        assert "Finished jobid" not in second.stderr  # refused before any job
        # A dry-run is not refused.
        assert snakemake(b, "-n", configs=[cfg]).returncode == 0
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    # The killed run released the lock: the second folder's run finishes without --unlock.
    snakemake(b, "--cores", "2", configs=[cfg])
    assert (shared / "values.csv").is_file()
    assert {p.parts[0] for p in files_under(a) | files_under(b)} <= {".snakemake"}  # nothing strays
    for folder in (REPO, a, b, tmp_path):
        assert not list(folder.glob("pwned")) and not list(folder.glob("shared")) and not (folder / "shared res").exists()


@pytest.mark.parametrize("text, needle", [
    (None, "does not exist"),
    ("results: r\nestimators:\n  - method: loo\n   budget: 3\n", "line 4, column 4: not valid YAML"),
    ("results: r\nthreads: 2\nresults: s\n", "line 3: key 'results' is given twice in one mapping (first on line 1)"),
    ("fine_tune:\n  training:\n    steps: 3\n    steps: 4\n", "line 4: key 'steps' is given twice"),
    ("- results: r\n", "the top level must be a mapping"),
    ("", "is empty (Snakemake refuses an empty config file too)"),
    ("# only a comment\n", "is empty"),
    ("results: r\xe9sultats\n".encode("latin-1"), "is not UTF-8 text (byte 0xe9 at offset 10); save it as UTF-8"),
])
def test_config_file_errors_name_the_file_and_line(tmp_path, text, needle):
    path = tmp_path / "cfg.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    elif text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_yaml(path)
    assert str(err.value).startswith(str(path)) or f"{path} " in str(err.value)
    assert needle in str(err.value)


def test_a_repeated_key_is_refused_by_the_workflow_naming_file_and_line(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("results: r\nresults: s\n")
    assert f"{path}, line 2: key 'results' is given twice" in dry_run_error(tmp_path, path)


@pytest.mark.parametrize("cfg, needle", [
    ({"results": ""}, "results is empty"),
    ({"results": "  "}, "results is empty"),
    ({"results": "afile/sub"}, "afile is a file, not a folder"),
    ({"estimators": [{"method": "kernelshap", "budget": 10**9}]}, "budget 1000000000 is above the limit"),
    ({"estimators": [{"method": "banzhaf", "budget": 10**9}]}, "budget 1000000000 is above the limit"),
    ({"estimators": [{"method": "loo"}, {"method": "leverage", "budget": 8}, {"method": "loo"}]},
     "estimators[2] repeats estimators[0]"),
])
def test_unusable_results_paths_budgets_and_repeats_are_refused(tmp_path, cfg, needle):
    (tmp_path / "afile").write_text("")
    assert needle in dry_run_error(tmp_path, cfg)


@pytest.mark.parametrize("cfg, needle", [
    ({"train_full": {"steps": 50, "warmup_steps": 50}},
     "train_full.warmup_steps: 50 warmup steps are not fewer than the 50 steps: the learning rate rises to 100% of lr"),
    ({"fine_tune": {"ga": {"steps": 10, "warmup_steps": 20}}}, "fine_tune.ga.warmup_steps: 20 warmup steps are not "
                                                              "fewer than the 10 steps: the learning rate rises to 50%"),
])
def test_a_warmup_that_outlasts_training_is_said_before_any_job(tmp_path, monkeypatch, cfg, needle):
    """Some reference recipes do it on purpose (configs/artbench.yaml), so it plans, with a warning."""
    monkeypatch.chdir(tmp_path)
    base = deep_update(load_yaml(REPO / "config.yaml"), load_yaml(TINY))
    with pytest.warns(UserWarning, match="warmup steps are not fewer") as caught:
        Plan(deep_update(base, cfg), REPO / "workflow" / "schemas" / "config.schema.yaml", read_only=True)
    assert any(needle in str(w.message) for w in caught), [str(w.message) for w in caught]


@pytest.mark.parametrize("cfg, needle", [
    ({"resultz": "x"}, "'resultz' was unexpected"),
    ({"threads": "two"}, "threads: 'two' is not of type 'integer'"),
    ({"data": {"classes": [0, 10]}}, "data.classes has class indices outside 0..9: [10]"),
    ({"data": {"source": "folder", "root": "/nonexistent-diffcredit-test/images"}},
     "data.root /nonexistent-diffcredit-test/images is not a folder"),
    ({"generate": {"inference_steps": 1000}}, "generate.inference_steps 1000 exceeds the model's 100 training timesteps"),
    ({"estimators": [{"method": "leverage", "budget": 8, "seed": -1}]}, "estimators.0.seed: a seed must be from 0 to 2**32 - 1"),
    ({"estimators": [{"method": "stratified", "budget": 15}]}, "budget 15 exceeds the 14 coalitions of 4 players"),
    ({"data": {"by": "split", "groups": 25, "per_class": None}, "estimators": [{"method": "exact", "budget": 100}]},
     "limited to 16 players, got n_players=25"),
    ({"model": {"block_out_channels": [16, 33]}}, "must be multiples of norm_num_groups 8"),
    (yaml.safe_load("data: {source: folder, contributors: [{name: no, path: a}, {name: 1, path: b}]}"),
     "data.contributors.0.name: False is not of type 'string': YAML reads unquoted yes, no, on, off, true and "
     "false as booleans and unquoted digits as numbers; put the value in quotes"),
    (yaml.safe_load("results: 2026"), "results: 2026 is not of type 'string': YAML reads"),
    ({"estimators": [{"method": "stratified", "budget": 12, "target": {"half_width": "x", "max_budget": 14}}]},
     "half_width: 'x' is not of type 'number' and 'x' is not of type 'object'"),
    ({"data": {"by": "split", "groups": 3, "shares": [1, 0, 1]}}, "data.shares.1: 0 is less than or equal to"),
    ({"data": {"by": "split", "groups": 3, "shares": [1, 1]}}, "got 2 shares for by: split with 3 group(s)"),
    ({"data": {"by": "split", "groups": 1}}, "found 1 contributor(s) (['group0']); crediting needs at least 2"),
    ({"data": {"classes": [0, 0, 1]}}, "data.classes: [0, 0, 1] has non-unique elements"),
    ({"properties": []}, "properties: [] should be non-empty"),
    ({"properties": ["class_entropy", "class_entropy"]}, "has non-unique elements"),
    ({"generate": {"n_images": 1}}, "generate.n_images: 1 is less than the minimum of 2"),
    ({"generate": {"eta": 5}}, "generate.eta: 5 is greater than the maximum of 1"),
    ({"canaries": [{"kind": "blur", "strength": -1}]}, "canaries.0.strength: -1 is less than the minimum of 0"),
    ({"canaries": [{"kind": "blur", "name": "digit3"}]}, "canaries[0]: name 'digit3' is taken"),
    ({"canaries": [{"kind": "blur", "name": "x"}, {"kind": "noise", "name": "x"}]}, "canaries[1]: name 'x' is taken"),
    ({"model": {"block_out_channels": []}}, "model.block_out_channels: [] should be non-empty"),
    ({"model": {"attention_levels": [5]}}, "model.attention_levels [5] outside 0..1"),
    ({"threads": 0}, "threads: 0 is less than the minimum of 1"),
    ({"fine_tune": {"training": {"lr": 0}}}, "fine_tune.training.lr: 0 is less than or equal to the minimum of 0"),
    ({"fine_tune": {"strategy": "proxy"}}, "strategy proxy samples the full model conditioned on a coalition's "
                                           "labels, and model.family ddpm has no conditioning"),
    ({"model": {"family": "ddpm_cond"}, "estimators": [{"method": "stratified", "budget": 12, "strategy": "proxy",
                                                        "training_noise": 2}]},
     "strategy proxy trains nothing, so it has no training randomness to replicate"),
    ({"model": {"family": "ddpm_cond"}, "fine_tune": {"strategy": "proxy"}, "data": {"by": "split", "groups": 4}},
     "strategy proxy tells coalitions apart only by their labels, and 4 label(s) are held by several contributors "
     "(label 0: group0, group1, group2, group3)"),
    ({"model": {"family": "ddpm_cond"}, "fine_tune": {"strategy": "proxy"}, "canaries": [{"kind": "blur"}]},
     "canaries carry the labels of the images they are made from"),
    ({"estimators": [{"method": "leverage", "budget": 8, "n_boot": 10**8}]},
     "estimators.0.n_boot: 100000000 resamples: past 100000 a 95% interval's ends move by less than"),
    ({"results": "runs\nold"}, "results: 'runs\\nold' holds the control character '\\n'"),
    ({"data": {"source": "folder", "root": "imgs\t"}}, "data.root: 'imgs\\t' holds the control character"),
    ({"results": "/"}, "results / is the file system's root"),
    ({"data": {"per_class": 1000}}, "data.per_class is 1000, but 4 class(es) hold fewer images (digit2 has 177"),
    ({"prune": None, "fine_tune": {"training": None}},
     "fine_tune.training: is empty: YAML reads a key with nothing after it as null; indent its keys under it"),
    ({"data": {"condition": "contributor"}}, "data.condition: contributor does not apply to model.family ddpm, "
                                             "which is not conditional"),
    ({"model": {"family": "ddpm_cond"}, "data": {"condition": "caption"}},
     "data.condition: caption does not apply to model.family ddpm_cond, which takes data.condition class or "
     "contributor"),
])
def test_bad_values_are_config_errors_not_tracebacks(tmp_path, monkeypatch, cfg, needle):
    monkeypatch.chdir(tmp_path)
    base = deep_update(load_yaml(REPO / "config.yaml"), load_yaml(TINY))
    with pytest.raises(ConfigError) as err:
        Plan(deep_update(base, cfg), REPO / "workflow" / "schemas" / "config.schema.yaml", read_only=True)
    assert needle in str(err.value)


def test_a_value_of_one_allowed_type_is_told_that_type_s_rules_only(tmp_path, monkeypatch):
    """half_width is a number or a mapping: 0 breaks the number's minimum, and saying
    that it is not a mapping either would only confuse."""
    monkeypatch.chdir(tmp_path)
    base = deep_update(load_yaml(REPO / "config.yaml"), load_yaml(TINY))
    cfg = {"estimators": [{"method": "stratified", "budget": 12, "target": {"half_width": 0, "max_budget": 14}}]}
    with pytest.raises(ConfigError) as err:
        Plan(deep_update(base, cfg), REPO / "workflow" / "schemas" / "config.schema.yaml", read_only=True)
    assert str(err.value).endswith("estimators.0.target.half_width: 0 is less than or equal to the minimum of 0")


def test_a_held_results_lock_names_its_holder_and_a_lockless_file_system_only_warns(tmp_path, monkeypatch):
    import errno
    import fcntl

    from diffcredit.lock import lock_results

    held = lock_results(tmp_path)
    code = f"import sys; sys.path.insert(0, {str(REPO / 'src')!r}); from diffcredit.lock import lock_results; " \
           f"lock_results({str(tmp_path)!r})"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert other.returncode != 0 and f"is in use by pid {os.getpid()}" in other.stderr
    held.close()
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0  # released

    def no_locks(*args):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "lockf", no_locks)
    with pytest.warns(UserWarning, match="cannot lock the results folder"):
        assert lock_results(tmp_path / "nfs") is not None


@pytest.mark.parametrize("free_mib, says_full", [(1, True), (10_000, False)])
def test_a_write_that_fails_on_a_full_disk_says_so(tmp_path, monkeypatch, free_mib, says_full):
    """torch.save on a full disk raises "[enforce fail at inline_container.cc] unexpected
    pos"; the job says the disk is full instead, and leaves other failures as they are."""
    import diffcredit.runner as runner
    from diffcredit.stages import STAGES

    def fails(job, progress=True):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 2048 vs 1980")

    record = STAGES["prune"]
    monkeypatch.setattr(type(record), "function", lambda self: fails)
    monkeypatch.setattr(runner, "_free", lambda path: free_mib << 20)
    job = {"rule": "prune", "out": str(tmp_path / "results" / "models" / "pruned" / "0123456789abcdef")}
    with pytest.raises((OSError, RuntimeError)) as info:
        runner.run_job(job)
    if says_full:
        assert isinstance(info.value, OSError) and "is full (1 MiB free)" in str(info.value)
        assert str(tmp_path) in str(info.value) and "unexpected pos" in str(info.value.__cause__)
    else:
        assert isinstance(info.value, RuntimeError) and "unexpected pos" in str(info.value)


def test_other_failures_on_a_nearly_full_disk_keep_their_own_message(monkeypatch, tmp_path):
    import diffcredit.runner as runner
    from diffcredit.stages import STAGES

    def fails(job, progress=True):
        raise RuntimeError("CUDA out of memory")

    monkeypatch.setattr(type(STAGES["prune"]), "function", lambda self: fails)
    monkeypatch.setattr(runner, "_free", lambda path: 1 << 20)
    with pytest.raises(RuntimeError, match="CUDA out of memory"):
        runner.run_job({"rule": "prune", "out": str(tmp_path / "x")})


def test_a_job_uses_the_threads_snakemake_granted_it(tmp_path, monkeypatch):
    """Under --cores 1 Snakemake grants a rule of threads: 2 one thread, and says so in
    OMP_NUM_THREADS; the job takes that (was: the config's 2, oversubscribing the cores)."""
    import torch

    from diffcredit.devices import job_device

    (tmp_path / "Snakefile").write_text('rule a:\n    output: "a.txt"\n    threads: 2\n'
                                        '    shell: "echo $OMP_NUM_THREADS > {output}"\n')
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", "-d", str(tmp_path), "-s",
                    str(tmp_path / "Snakefile")], check=True, capture_output=True)
    assert (tmp_path / "a.txt").read_text().strip() == "1"
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        job_device({"threads": 2, "device": "cpu"})
        assert torch.get_num_threads() == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        job_device({"threads": 2, "device": "cpu"})
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


@pytest.mark.workflow
def test_data_jobs_run_in_a_bare_batch_environment_with_this_checkouts_library(tmp_path):
    """What batch jobs often get: the C locale (with contributor and file names in other
    scripts), TMPDIR naming a folder that does not exist, and another diffcredit earlier
    on PYTHONPATH (was: jobs imported it and ran code the plan was not made with)."""
    rng = np.random.default_rng(5)
    for name in ("葛飾北斎", "Zoë", "O'Keeffe"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(tmp_path / "data" / name / f"ü{i}.png")
    fake = tmp_path / "other" / "diffcredit"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text("import sys\nsys.exit('another diffcredit ran this job')\n")
    cfg = write_config(tmp_path / "c.yaml", {"data": {"source": "folder", "root": str(tmp_path / "data"),
                                                      "resolution": 8, "channels": 3, "classes": None,
                                                      "per_class": None},
                                             "estimators": [{"method": "leverage", "budget": 4}]})
    env = {**sm_env(), "LC_ALL": "C", "LANG": "C", "TMPDIR": str(tmp_path / "missing"),
           "PYTHONPATH": str(tmp_path / "other")}
    proc = subprocess.run(sm_command(tmp_path / "w", "--cores", "1", "--until", "prepare_data", configs=[cfg]),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    shards = list((tmp_path / "w" / "results-tiny" / "data" / "shards").glob("*.npz"))
    assert len(shards) == 3


def test_the_slurm_profile_without_slurm_commands_is_refused_before_any_job(tmp_path):
    """--profile slurm on a laptop or a node without SLURM's commands (was: every job's
    submission failed, retried, after 45 s, with "No such file or directory: 'sacct'")."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for name in ("bash", "sh", "env", "which", "ps", "id", "uname"):
        if shutil.which(name):
            (tools / name).symlink_to(shutil.which(name))
    env = {**sm_env(), "PATH": f"{tools}{os.pathsep}{Path(sys.executable).parent}"}
    proc = subprocess.run(sm_command(tmp_path / "w", "--profile", str(REPO / "slurm"), "--until", "prepare_data"),
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "sbatch and squeue are not on PATH here; run from the cluster's login node" in out
    assert not (tmp_path / "w" / "results-tiny" / "data").exists()  # no job ran
    dry = subprocess.run(sm_command(tmp_path / "w", "--profile", str(REPO / "slurm"), "--dry-run"),
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert dry.returncode == 0, dry.stdout[-2000:] + dry.stderr[-2000:]


def test_snakemakes_unlock_does_not_open_a_results_folder_a_run_holds(tmp_path):
    """`snakemake --unlock` (what Snakemake advises after a crash, and what people run when
    a second run is refused) removes Snakemake's own lock only: the run holding the
    results folder keeps it, and a second run is still refused naming it."""
    from diffcredit.lock import lock_results

    results = tmp_path / "w" / "results-tiny"
    held = lock_results(results)
    try:
        unlock = subprocess.run(sm_command(tmp_path / "w", "--unlock"), cwd=REPO, env=sm_env(), capture_output=True,
                                text=True, timeout=300)
        assert unlock.returncode == 0, unlock.stderr[-2000:]
        second = subprocess.run(sm_command(tmp_path / "w", "--cores", "1"), cwd=REPO, env=sm_env(),
                                capture_output=True, text=True, timeout=300)
        assert second.returncode != 0 and f"is in use by pid {os.getpid()}" in second.stdout + second.stderr
        assert not (results / "data").exists()  # no job ran
    finally:
        held.close()


def test_touch_on_missing_outputs_makes_nothing_look_complete(tmp_path):
    """`snakemake --touch` on a folder without the outputs: no empty artifact is made, the
    run says it ended without its targets, and the next run plans every job again."""
    before = planned(tmp_path / "w")
    proc = subprocess.run(sm_command(tmp_path / "w", "--cores", "1", "--touch"), cwd=REPO, env=sm_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "the run ended without" in proc.stdout + proc.stderr
    results = tmp_path / "w" / "results-tiny"
    made = [p for p in results.rglob("*") if p.is_file() and not p.relative_to(results).parts[0] in (".cache", "logs")
            and p.name != ".lock"]
    assert made == []
    assert planned(tmp_path / "w") == before


@pytest.mark.parametrize("raw", [b"generate:\r\n  n_images: 32\r\n", b"\xef\xbb\xbfgenerate:\n  n_images: 32\n"],
                         ids=["crlf", "byte-order-mark"])
def test_a_config_saved_on_windows_reads_like_any_other(tmp_path, raw):
    """Windows line endings, or the byte-order mark Notepad writes: the same keys, in our
    reading and in Snakemake's (a mark read as part of the first key would make it unknown)."""
    path = tmp_path / "win.yaml"
    path.write_bytes(raw)
    assert load_yaml(path) == {"generate": {"n_images": 32}}
    jobs = planned(tmp_path / "w", configs=[path])
    assert jobs and jobs == planned(tmp_path / "w2", configs=[write_config(tmp_path / "unix.yaml",
                                                                           {"generate": {"n_images": 32}})])


def test_a_batch_larger_than_a_coalitions_images_runs_whole_epochs(tmp_path):
    """A coalition of one small contributor under a batch size larger than its images:
    each batch runs through whole seeded epochs (with parts of one at either end), every
    image used as often as any other (to two), never an error or an image left out."""
    from diffcredit.training import batch_indices

    n, b = 60, 1000
    for step in range(3):
        idx = batch_indices(n, b, seed=7, step=step)
        counts = np.bincount(idx, minlength=n)
        assert len(idx) == b and counts.min() >= b // n - 1 and counts.max() <= b // n + 2
    seen = np.concatenate([batch_indices(n, b, 7, s) for s in range(3)])  # epochs run on across steps
    for epoch in range(len(seen) // n):
        assert sorted(seen[epoch * n:(epoch + 1) * n]) == list(range(n))


def test_every_row_of_the_reliability_table_names_a_test_that_exists():
    """docs/reliability.md's rows are numbered in order and each names tests that exist."""
    import re

    rows = [line for line in (REPO / "docs" / "reliability.md").read_text().splitlines() if re.match(r"\| \d+ \|", line)]
    assert [int(r.split("|")[1]) for r in rows] == list(range(1, len(rows) + 1))
    for row in rows:
        for file, name in re.findall(r"`(test_\w+)::(test_\w+)", row.split("|")[-2]):
            source = (REPO / "tests" / f"{file}.py").read_text()
            assert re.search(rf"^def {name}\(", source, re.M), (row[:60], file, name)
