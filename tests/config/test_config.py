import hashlib
import json
import tomllib
from pathlib import Path

import pytest

from edge.cli import main
from edge.config import ConfigError, load_settings, parse_settings
from edge.identity import generate_keypair

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "gateway.example.toml"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return path


def test_example_is_valid_apart_from_the_key_an_installer_provides() -> None:
    settings = load_settings(EXAMPLE, check_files=False)
    assert settings.store.id == "store-001"
    assert settings.topic_root == "store/store-001"
    assert settings.client_id == "edge-gateway-store-001"
    assert [d.zone for d in settings.displays] == ["entrance", "fitting-rooms", "cafe", "electronics"]
    # relative paths are taken from the file's folder; what the gateway writes goes next to it, never to
    # a root-only place (the hand-run path of the README works as a normal user)
    assert settings.decisions.model == (EXAMPLE.parent / "../models/offers.onnx")
    assert settings.ledger.path == EXAMPLE.parent / "state/ledger.sqlite"
    assert settings.control.state_dir == EXAMPLE.parent / "state"
    with pytest.raises(ConfigError) as error:
        load_settings(EXAMPLE)
    assert error.value.problems == [
        f"identity.public_key_files.0: file not found: {EXAMPLE.parent / 'keys/token-public.pem'}"
    ]


def test_every_problem_is_reported_with_its_key_path(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[store]
id = "bad id with spaces"
[mqtt]
port = 70000
colour = "blue"
[[zones]]
id = "a"
[[displays]]
id = "d1"
zone = "a"
min_display_s = -1
""",
    )
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    problems = error.value.problems
    keys = sorted(problem.split(":")[0] for problem in problems)
    assert keys == ["displays.0.min_display_s", "mqtt.colour", "mqtt.port", "store.id"]


def test_cross_references_are_checked(tmp_path: Path) -> None:
    path = _write(
        tmp_path, '[store]\nid = "s"\n[[zones]]\nid = "a"\n[[displays]]\nid = "d"\nzone = "nowhere"\n'
    )
    with pytest.raises(ConfigError) as error:
        load_settings(path, check_files=False)
    assert "displays.0.zone: unknown zone 'nowhere'" in error.value.problems[0]


def test_secrets_are_refused_in_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, '[store]\nid = "s"\n[mqtt]\npassword = "hunter2"\n[[zones]]\nid = "a"\n')
    with pytest.raises(ConfigError) as error:
        load_settings(path, check_files=False)
    assert error.value.problems == [
        "mqtt: 'password' must not be written in the config file; use 'password_env' "
        "(an environment variable) or 'password_file' (a file path)"
    ]
    assert "hunter2" not in str(error.value)


def test_syntax_and_encoding_errors(tmp_path: Path) -> None:
    bad = _write(tmp_path, "[store\nid=")
    with pytest.raises(ConfigError, match="TOML syntax"):
        load_settings(bad)
    bad.write_bytes(b"\xff\xfe")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.toml")


ALL_ZONES = '[[zones]]\nid = "entrance"\n[[zones]]\nid = "cafe"\n[[zones]]\nid = "fitting-rooms"\n[[zones]]\nid = "electronics"\n'


def _good_config(
    tmp_path: Path, *, zones: str = ALL_ZONES, model: Path = REPO / "models/offers.onnx"
) -> Path:
    _, public_pem = generate_keypair()
    key = tmp_path / "k.pem"
    key.write_bytes(public_pem)
    return _write(
        tmp_path,
        f'[store]\nid = "s"\n[identity]\npublic_key_files = ["{key}"]\n'
        f'[decisions]\nmodel = "{model}"\noffers_file = "{REPO / "config/offers.example.toml"}"\n' + zones,
    )


def test_check_config_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, '[store]\nid = "s"\n[mqtt]\nport = 0\n[[zones]]\nid = "a"\n')
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "mqtt.port: Input should be greater than or equal to 1" in err
    assert main(["check-config", str(_good_config(tmp_path))]) == 0
    assert "OK" in capsys.readouterr().out


def test_contents_are_checked_not_only_existence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _good_config(tmp_path, zones='[[zones]]\nid = "cafe"\n')
    (tmp_path / "k.pem").write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    assert main(["check-config", str(path)]) == 1
    err = capsys.readouterr().err
    assert "identity.public_key_files:" in err
    assert "BEGIN" not in err  # never the key content


def test_offers_for_zones_this_store_lacks_are_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _good_config(tmp_path, zones='[[zones]]\nid = "cafe"\n')
    assert main(["check-config", str(path)]) == 0
    out = capsys.readouterr().out
    assert (
        "warning: decisions.offers_file: offer 'denim-fitting-15' targets only zones this store lacks" in out
    )


def test_a_tampered_model_is_refused_and_run_refuses_to_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    onnx = (REPO / "models/offers.onnx").read_bytes()
    (models / "offers.onnx").write_bytes(onnx[:-1] + bytes([onnx[-1] ^ 1]))
    (models / "offers.json").write_bytes((REPO / "models/offers.json").read_bytes())
    path = _good_config(tmp_path, model=models / "offers.onnx")
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "refusing to start" in err
    assert "decisions.model:" in err
    assert "sha256" in err


def test_parse_settings_defaults() -> None:
    settings = parse_settings(tomllib.loads('[store]\nid = "s"\n[[zones]]\nid = "a"\n'), base_dir=REPO)
    assert settings.mqtt.tcp_nodelay is True
    assert settings.mqtt.keepalive_s == 15
    assert settings.ledger.path == REPO / "state/ledger.sqlite"


def test_sync_settings_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = _good_config(tmp_path).read_text()
    # enabled without a URL or a token source; an inline token is refused as a secret
    for sync, expected in (
        ("[sync]\nenabled = true\n", "sync: url is required when sync is enabled"),
        ('[sync]\nenabled = true\nurl = "https://c.example"\n', "token_env or token_file is required"),
        (
            '[sync]\nenabled = true\nurl = "https://c.example"\ntoken = "abc"\n',
            "sync: 'token' must not be written in the config file",
        ),
        ('[sync]\nenabled = true\nurl = "ftp://c"\ntoken_env = "T"\n', "sync.url"),
        # plain http to another machine: the token and shopper ids would cross the network in clear
        (
            '[sync]\nenabled = true\nurl = "http://cloud.example"\ntoken_env = "T"\n',
            "sync.url: must be https://",
        ),
        (
            '[sync]\nenabled = true\nurl = "http://10.0.0.5:8640"\ntoken_env = "T"\n',
            "sync.url: must be https://",
        ),
        (
            '[sync]\nenabled = true\nurl = "https://c.example"\ntoken_file = "missing"\n',
            "sync.token_file: file not found",
        ),
    ):
        path = tmp_path / "sync.toml"
        path.write_text(sync + base)
        assert main(["check-config", str(path)]) == 1, sync
        assert expected in capsys.readouterr().err, sync
    (tmp_path / "token").write_text("t")
    path = tmp_path / "sync.toml"
    for url in (
        "https://cloud.example",
        "http://127.0.0.1:8640",
        "http://localhost:8640",
        "http://[::1]:8640",
    ):
        path.write_text(f'[sync]\nenabled = true\nurl = "{url}"\ntoken_file = "token"\n' + base)
        assert main(["check-config", str(path)]) == 0, (url, capsys.readouterr().err)


def test_camera_settings_are_checked(tmp_path: Path) -> None:
    head = '[store]\nid = "s"\n[[zones]]\nid = "a"\n'
    camera = '[[cameras]]\nid = "{id}"\nsource = "{source}"\nzone = "{zone}"\n'
    for extra, expected in (
        (camera.format(id="c1", source="0", zone="nowhere"), "cameras.0.zone: unknown zone 'nowhere'"),
        (camera.format(id="c1", source="0", zone="a") * 2, "cameras: camera ids must be unique"),
        (camera.format(id="c1", source="0", zone="a") + "loop = true\n", "loop applies to video files only"),
        (camera.format(id="c1", source="0", zone="a") + "masks = [[[0, 0], [1, 1]]]\n", "at least 3 points"),
        (
            camera.format(id="c1", source="0", zone="a") + "masks = [[[0, 0], [1, 0], [0, 2]]]\n",
            "normalised coordinates in 0..1",
        ),
        (camera.format(id="c1", source="0", zone="a") + "qr_fps = 0\n", "cameras.0.qr_fps"),
        (camera.format(id="c1", source="0", zone="a") + "snapshots = true\n", "cameras.0.snapshots"),
    ):
        with pytest.raises(ConfigError) as error:
            load_settings(_write(tmp_path, head + extra), check_files=False)
        assert any(expected in problem for problem in error.value.problems), (extra, error.value.problems)


def test_camera_files_are_relative_to_the_config_and_must_exist(tmp_path: Path) -> None:
    text = (
        '[store]\nid = "s"\n[[zones]]\nid = "a"\n'
        '[[cameras]]\nid = "door"\nsource = "videos/door.avi"\nloop = true\nzone = "a"\n'
        'detector_model = "models/people.onnx"\n'
        '[[cameras]]\nid = "ip"\nsource = "rtsp://cam.local/stream"\nzone = "a"\n'
    )
    path = _write(tmp_path, text)
    settings = load_settings(path, check_files=False)
    door, ip = settings.cameras
    assert door.source == str(tmp_path / "videos/door.avi") and door.is_file
    assert door.detector_model == tmp_path / "models/people.onnx"
    assert ip.source == "rtsp://cam.local/stream" and ip.is_stream and ip.device_index is None
    with pytest.raises(ConfigError) as error:
        load_settings(path)
    assert f"cameras.0.detector_model: file not found: {tmp_path / 'models/people.onnx'}" in (
        error.value.problems
    )


def test_a_model_onnxruntime_cannot_open_passes_check_config_and_run_refuses_to_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # check-config reads the manifest and the bytes' sha256 without onnxruntime; a file whose manifest
    # vouches for it but which is no ONNX graph is caught when the session opens, and run refuses cleanly.
    models = tmp_path / "models"
    models.mkdir()
    blob = b"these bytes are not an ONNX model"
    (models / "offers.onnx").write_bytes(blob)
    manifest = json.loads((REPO / "models/offers.json").read_bytes())
    manifest["sha256"] = hashlib.sha256(blob).hexdigest()
    (models / "offers.json").write_text(json.dumps(manifest))
    path = _good_config(tmp_path, model=models / "offers.onnx")
    assert main(["check-config", str(path)]) == 0
    capsys.readouterr()
    assert main(["run", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "refusing to start" in err
    assert "decisions.model: onnxruntime cannot load" in err
