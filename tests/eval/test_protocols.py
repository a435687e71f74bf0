"""Protocol TOML files: the packaged ones load; bad files give errors naming the file and key."""

import re

import pytest

from cirbench.config import ConfigError
from cirbench.eval.protocols import Degradation, Protocol, list_protocols, load_protocol

ALL7 = ["live1", "live1_gray", "classic5", "bsds500", "bsds500_gray", "div2k", "div2k_gray"]


@pytest.mark.parametrize(
    "name,n_jobs,datasets",
    [
        ("blind", 7 * 4, ALL7),
        ("nonblind", 7 * 4, ALL7),
        ("unseen", 7 * 19, ALL7),
        ("double", 5 * 9 * 2, ["live1", "live1_gray", "classic5", "bsds500", "bsds500_gray"]),
        ("smoke", 2 + 1, ["classic5", "live1"]),
    ],
)
def test_packaged_protocols_load(name, n_jobs, datasets):
    assert name in list_protocols()
    p = load_protocol(name)
    assert p.name == name and p.version
    assert len(p.jobs) == n_jobs
    assert p.datasets == datasets
    assert len(p.sha256) == 64
    assert "jpeg" in p.models


def test_blind_and_nonblind():
    blind, nonblind = load_protocol("blind"), load_protocol("nonblind")
    assert not blind.give_qf and nonblind.give_qf
    assert {g.qf for _, g in blind.jobs} == {10, 20, 30, 40}
    assert all(g.name == "jpeg" and g.qf1 is None for _, g in blind.jobs)
    assert blind.setting == "single"
    unseen = load_protocol("unseen")
    assert sorted({g.qf for _, g in unseen.jobs}) == list(range(5, 100, 5))


def test_double_degradations():
    p = load_protocol("double")
    names = {g.name for _, g in p.jobs}
    assert names == {f"double-q{q1}-s{s}x{s}" for q1 in (10, 30, 50) for s in (4, 0)}
    assert ("classic5", Degradation(10, 30, (4, 4))) in p.jobs
    assert Degradation(10, 30, (4, 4)).name == "double-q30-s4x4"
    assert Degradation(10).name == "jpeg"
    assert {g.qf for _, g in p.jobs} == {10, 30, 50}


def test_load_by_path(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text('name = "mine"\nversion = "0.1"\n[[tasks]]\ndatasets = ["classic5"]\nqfs = [5, 95]\n')
    p = load_protocol(f)
    assert p.path == f and p.jobs == (("classic5", Degradation(5)), ("classic5", Degradation(95)))
    assert p.models == ("jpeg",) and p.description == ""


def _write(tmp_path, body: str):
    f = tmp_path / "bad.toml"
    f.write_text('name = "bad"\nversion = "1"\n' + body)
    return f


def test_unknown_task_key_names_file_and_suggests(tmp_path):
    f = _write(tmp_path, '[[tasks]]\ndatasets = ["classic5"]\nqfs = [10]\nqff = [10]\n')
    with pytest.raises(ConfigError) as err:
        load_protocol(f)
    msg = str(err.value)
    assert str(f) in msg and "'qff'" in msg and "did you mean 'qfs'" in msg


def test_unknown_top_key(tmp_path):
    f = _write(tmp_path, 'descripton = "x"\n[[tasks]]\ndatasets = ["classic5"]\nqfs = [10]\n')
    with pytest.raises(ConfigError, match="did you mean 'description'") as err:
        load_protocol(f)
    assert str(f) in str(err.value)


@pytest.mark.parametrize(
    "body,match",
    [
        ('[[tasks]]\ndatasets = ["classic5"]\n', "missing required key 'qfs'"),
        ('[[tasks]]\ndatasets = ["clasic5"]\nqfs = [10]\n', "did you mean 'classic5'"),
        ('[[tasks]]\ndatasets = ["classic5"]\nqfs = [0]\n', "1..100"),
        ('[[tasks]]\ndatasets = ["classic5"]\nqfs = [10.5]\n', "'qfs' must be a list of integers"),
        ('[[tasks]]\ndatasets = ["classic5"]\nqfs = []\n', "non-empty"),
        ('[[tasks]]\ndatasets = ["classic5"]\nqfs = 10\n', "must be a list"),
        ('[[tasks]]\ndatasets = ["classic5"]\nqfs = [10]\ndegradation = "webp"\n', "degradation"),
        ('[[tasks]]\ndatasets = ["classic5"]\nqfs = [10]\nshift = [4, 4]\n', "only apply"),
        ('[[tasks]]\ndatasets = ["classic5"]\nqfs = [10]\ndegradation = "double"\n', "qf1"),
        ('[[tasks]]\ndatasets = ["classic5"]\nqfs = [10]\ndegradation = "double"\nqf1 = [30]\nshift = [8, 0]\n',
         "shift"),
        ('give_qf = "yes"\n[[tasks]]\ndatasets = ["classic5"]\nqfs = [10]\n', "true/false"),
    ],
)
def test_invalid_protocols(tmp_path, body, match):
    f = _write(tmp_path, body)
    with pytest.raises(ConfigError, match=match) as err:
        load_protocol(f)
    assert str(f) in str(err.value)


def test_missing_top_level_key(tmp_path):
    f = tmp_path / "x.toml"
    f.write_text('name = "x"\n[[tasks]]\ndatasets = ["classic5"]\nqfs = [10]\n')
    with pytest.raises(ConfigError, match="missing required key 'version'"):
        load_protocol(f)


def test_malformed_toml_names_file(tmp_path):
    f = tmp_path / "broken.toml"
    f.write_text('name = "broken\nversion = 1\n')
    with pytest.raises(ConfigError, match="malformed TOML") as err:
        load_protocol(f)
    assert str(f) in str(err.value)
    with pytest.raises(ConfigError, match="not found"):
        load_protocol(tmp_path / "absent.toml")


def test_unknown_protocol_name_suggests():
    with pytest.raises(ConfigError, match="did you mean 'blind'") as err:
        load_protocol("blnd")
    assert "known:" in str(err.value) and "nonblind" in str(err.value)


def test_protocols_env_dir_overrides(tmp_path, monkeypatch):
    (tmp_path / "blind.toml").write_text('name = "blind"\nversion = "9"\n[[tasks]]\ndatasets = ["classic5"]\n'
                                         "qfs = [50]\n")
    monkeypatch.setenv("CIRBENCH_PROTOCOLS", str(tmp_path))
    p = load_protocol("blind")
    assert p.version == "9" and len(p.jobs) == 1


def test_select_filters():
    p = load_protocol("blind")
    s = p.select(["classic5", "live1"], [10, 40])
    assert s.jobs == (("live1", Degradation(10)), ("live1", Degradation(40)),
                      ("classic5", Degradation(10)), ("classic5", Degradation(40)))
    assert p.select().jobs == p.jobs
    assert len(p.select(qfs=[20]).jobs) == 7
    with pytest.raises(ConfigError, match="--qf 99: protocol 'blind' has QF 10,20,30,40"):
        p.select(["classic5"], [99])
    with pytest.raises(ConfigError, match="--datasets bsds500: protocol 'smoke' has classic5, live1"):
        load_protocol("smoke").select(["bsds500"], [10])
    with pytest.raises(ConfigError, match="unknown dataset 'set14'"):
        p.select(["set14"], [10])
    extra = p.select(["folder:/some/where"], [10])
    assert extra.jobs == (("folder:/some/where", Degradation(10)),)
    d = load_protocol("double").select(["classic5"], [10])
    assert {g.name for _, g in d.jobs} == {f"double-q{q}-s{s}x{s}" for q in (10, 30, 50) for s in (4, 0)}


def test_adhoc_runs_exactly_the_values_given():
    p = Protocol.adhoc(["classic5", "folder:/x"], [10, 90], ("jpeg",))
    assert p.name == "adhoc" and not p.give_qf
    assert p.jobs == tuple((d, Degradation(q)) for d in ("classic5", "folder:/x") for q in (10, 90))
    # The sha256 is the ad-hoc definition's, not the selection's (as a protocol file's under --qf filters): ad-hoc
    # runs on other QFs into one folder resume it, and a resume checks the definition (issue 23).
    assert Protocol.adhoc(["classic5"], [10], ()).sha256 == Protocol.adhoc(["live1"], [20], ()).sha256
    with pytest.raises(ConfigError, match="did you mean 'classic5'"):
        Protocol.adhoc(["clasic5"], [10], ())
    with pytest.raises(ConfigError, match="1..100"):
        Protocol.adhoc(["classic5"], [0], ())


# --- issue 23: what `protocols validate` once called ok -----------------------------------------------------
@pytest.mark.parametrize("body,words", [
    ('setting = "bogus"\n[[tasks]]\ndatasets = ["classic5"]\nqfs = [10]\n', "key 'setting' is 'bogus'"),
    ('models = []\n[[tasks]]\ndatasets = ["classic5"]\nqfs = [10]\n', "key 'models' is an empty list"),
    ('[[tasks]]\ndatasets = []\nqfs = [10]\n', "[tasks #1]: key 'datasets' is an empty list"),
    ('tasks = []\n', "has no [[tasks]]"),
    ('metrics = []\n[[tasks]]\ndatasets = ["classic5"]\nqfs = [10]\n', "key 'metrics' is an empty list"),
], ids=["setting", "models", "datasets", "tasks", "metrics"])
def test_a_protocol_that_cannot_run_is_refused_on_load(tmp_path, body, words):
    f = tmp_path / "p.toml"
    f.write_text('name = "p"\nversion = "1"\n' + body)
    with pytest.raises(ConfigError, match=re.escape(words)) as err:
        load_protocol(f)
    assert str(f) in str(err.value)


def test_validate_says_not_ok_for_an_unknown_model_or_a_missing_folder(tmp_path, capsys):
    from cirbench.cli import main

    good = tmp_path / "good.toml"
    good.write_text('name = "good"\nversion = "1"\n[[tasks]]\ndatasets = ["classic5"]\nqfs = [10]\n')
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nversion = "1"\nmodels = ["jpeg", "fbcnn-colour"]\n[[tasks]]\n'
                   'datasets = ["folder:absent"]\nqfs = [10]\n')
    assert main(["protocols", "validate", str(good), str(bad), str(tmp_path / "p.toml")]) == 1
    out = capsys.readouterr().out
    assert f"{good}: ok (good v1, 1 jobs)" in out
    assert "unknown model 'fbcnn-colour' (did you mean 'fbcnn-color'?)" in out
    assert f"dataset folder:{tmp_path / 'absent'}: folder not found" in out and f"{bad}: not ok (2 problem(s))" in out
    assert f"NOT OK {tmp_path / 'p.toml'}: file not found" in out  # every file is checked, each said on its line
    assert main(["protocols", "validate", str(good)]) == 0


def test_protocol_settings_are_the_inference_presets():
    """The protocol loader names the settings without importing torch; the two lists must stay one."""
    from cirbench.eval.protocols import SETTINGS
    from cirbench.zoo.inference import InferenceSettings

    for name in SETTINGS:
        assert InferenceSettings.named(name).name == name
    with pytest.raises(ConfigError):
        InferenceSettings.named("bogus")
