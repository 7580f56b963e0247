"""`bench data fetch`: Range resume, digest checks, atomic placement, manifest, offline messages.

Every download goes to a local `http.server` on 127.0.0.1 (no network in tests)."""

import hashlib
import io
import json
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.data import catalogue as C
from bench.data import convert as V
from bench.data import download as D
from bench.data import fetch as F
from bench.io import iter_json_array, sha256_file
from bench.errors import BenchError, OfflineError
from tests.conftest import TEST_DATA


class _Files(BaseHTTPRequestHandler):
    files: dict = {}
    cut_once: set = set()  # paths whose next response sends half the body, then closes
    ignore_range: set = set()  # paths served whole (200) even when a Range is asked for
    log: list = []

    def do_GET(self):  # noqa: N802
        rng = self.headers.get("Range")
        _Files.log.append((self.path, rng))
        body = _Files.files.get(self.path)
        if body is None:
            self.send_response(404)
            self.end_headers()
            return
        start = 0
        if rng and self.path not in _Files.ignore_range:
            start = int(rng.split("=")[1].split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        part = body[start:]
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if self.path in _Files.cut_once:
            _Files.cut_once.discard(self.path)
            self.wfile.write(part[: len(part) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(part)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Files.files, _Files.cut_once, _Files.ignore_range, _Files.log = {}, set(), set(), []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("BENCH_OFFLINE", raising=False)


def _payload(n=200_000, seed=1):
    return bytes((i * 7 + seed) % 251 for i in range(n))


def _sha(b):
    return hashlib.sha256(b).hexdigest()


def test_cut_connection_resumes_with_a_range_request(server, tmp_path):
    body = _payload()
    _Files.files["/f.bin"] = body
    _Files.cut_once.add("/f.bin")
    digest = D.download_url(f"{server}/f.bin", tmp_path / "f.bin", sha256=_sha(body), retries=2)
    assert digest == _sha(body) and (tmp_path / "f.bin").read_bytes() == body
    assert _Files.log[0] == ("/f.bin", None)
    assert _Files.log[1] == ("/f.bin", f"bytes={len(body) // 2}-")
    assert not (tmp_path / "f.bin.part").exists()


def test_an_interrupted_download_never_leaves_a_file_at_the_final_path_and_a_rerun_resumes(server, tmp_path):
    body = _payload()
    _Files.files["/f.bin"] = body
    _Files.cut_once.add("/f.bin")
    with pytest.raises(D.FetchError, match="partial download is kept"):
        D.download_url(f"{server}/f.bin", tmp_path / "f.bin", retries=0)
    assert not (tmp_path / "f.bin").exists()
    assert (tmp_path / "f.bin.part").stat().st_size == len(body) // 2
    D.download_url(f"{server}/f.bin", tmp_path / "f.bin", sha256=_sha(body), retries=0)
    assert _Files.log[-1] == ("/f.bin", f"bytes={len(body) // 2}-")
    assert (tmp_path / "f.bin").read_bytes() == body and not (tmp_path / "f.bin.part").exists()


def test_sha256_mismatch_is_rejected_and_nothing_is_left_in_place(server, tmp_path):
    _Files.files["/f.bin"] = _payload()
    with pytest.raises(D.FetchError, match="sha256 mismatch"):
        D.download_url(f"{server}/f.bin", tmp_path / "f.bin", sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_size_mismatch_is_rejected(server, tmp_path):
    _Files.files["/f.bin"] = _payload(1000)
    with pytest.raises(D.FetchError, match="size mismatch"):
        D.download_url(f"{server}/f.bin", tmp_path / "f.bin", size=999)
    assert list(tmp_path.iterdir()) == []


def test_a_server_that_ignores_range_restarts_the_file(server, tmp_path):
    body = _payload()
    _Files.files["/f.bin"] = body
    _Files.ignore_range.add("/f.bin")
    (tmp_path / "f.bin.part").write_bytes(b"stale bytes from another file")
    D.download_url(f"{server}/f.bin", tmp_path / "f.bin", sha256=_sha(body))
    assert (tmp_path / "f.bin").read_bytes() == body


def test_http_404_is_an_error_not_a_missing_file(server, tmp_path):
    with pytest.raises(D.FetchError, match="HTTP 404"):
        D.download_url(f"{server}/nope", tmp_path / "x")


def _source(server, name="demo", **kw):
    a, b = _payload(5000, 1), _payload(7000, 2)
    _Files.files.update({"/a.json": a, "/b.json": b})
    files = [D.UrlFile("demo/a.json", (f"{server}/a.json",), _sha(a), len(a)),
             D.UrlFile("demo/b.json", (f"{server}/missing-mirror", f"{server}/b.json"))]  # no published digest
    return {name: C.Source(name, "test source", files, **kw)}, a, b


def test_fetch_records_digests_in_the_manifest_and_a_rerun_downloads_nothing(server, tmp_path):
    table, a, b = _source(server)
    with pytest.raises(D.FetchError, match="HTTP 404"):  # a dead mirror alone is an error ...
        F.fetch("demo", tmp_path, sources={"demo": C.Source("demo", "", [D.UrlFile("x", (f"{server}/missing",))])},
                progress=False)
    ctx = F.fetch("demo", tmp_path, sources=table, progress=False)  # ... but the next mirror is tried
    assert ctx.fetched == 2 and not ctx.missing
    files = json.loads((tmp_path / "manifest.json").read_text())["files"]
    assert files == {"demo/a.json": _sha(a), "demo/b.json": _sha(b)}
    n = len(_Files.log)
    again = F.fetch("demo", tmp_path, sources=table, progress=False)
    assert len(_Files.log) == n and again.present == 2 and again.fetched == 0


def test_a_locally_modified_file_is_fetched_again(server, tmp_path):
    table, a, _ = _source(server)
    F.fetch("demo", tmp_path, sources=table, progress=False)
    (tmp_path / "demo" / "a.json").write_bytes(b"edited")
    F.fetch("demo", tmp_path, sources=table, progress=False)
    assert (tmp_path / "demo" / "a.json").read_bytes() == a


def test_requirements_are_fetched_first_and_post_steps_run_after(server, tmp_path):
    table, _, _ = _source(server, name="base")
    seen = []
    table["top"] = C.Source("top", "", [], requires=["base"], post=[lambda ctx: seen.append(sorted(
        p.name for p in (ctx.root / "demo").iterdir()))])
    F.fetch("top", tmp_path, sources=table, progress=False)
    assert seen == [["a.json", "b.json"]]
    assert set(json.loads((tmp_path / "manifest.json").read_text())["sources"]) == {"base", "top"}


def test_offline_mode_lists_each_missing_file_with_the_fetch_command(server, tmp_path, monkeypatch, capsys):
    table, _, _ = _source(server)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ctx = F.fetch("demo", tmp_path, sources=table, progress=False)
    err = capsys.readouterr().err
    assert [r for r, _ in ctx.missing] == ["demo/a.json", "demo/b.json"] and _Files.log == []
    assert err.count(f"python -m bench data fetch demo --root {tmp_path.resolve()}") == 2


def test_an_unreachable_host_is_reported_as_missing_not_as_a_crash(tmp_path, capsys):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there: connection refused
    table = {"demo": C.Source("demo", "", [D.UrlFile("x.bin", (f"http://127.0.0.1:{port}/x.bin",))])}
    ctx = F.fetch("demo", tmp_path, sources=table, progress=False)
    assert ctx.missing and ctx.missing[0][0] == "x.bin"
    assert "python -m bench data fetch demo --root" in capsys.readouterr().err
    assert not (tmp_path / "x.bin").exists()


def test_main_fetch_offline_raises_one_line_error_after_the_per_file_messages(tmp_path, monkeypatch, capsys):
    from bench.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("network used while offline"))
    rc = main(["data", "fetch", "pope", "--root", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("missing: pope/")]
    assert len(lines) == 6 and all(f"python -m bench data fetch pope --root {tmp_path.resolve()}" in ln for ln in lines)
    assert err.strip().splitlines()[-1].startswith("error: 6 file(s) of 'pope' missing")


def test_hub_offline_names_the_command_for_every_hub_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BENCH_OFFLINE", "1")
    ctx = F.fetch("hadpo-data", tmp_path, progress=False)
    assert len(ctx.missing) == 6
    assert capsys.readouterr().err.count("python -m bench data fetch hadpo-data --root") == 6


def test_hub_files_are_staged_checked_and_moved_into_place(tmp_path, monkeypatch):
    import huggingface_hub

    body = b'{"1": {"chosen": ["a"], "rejected": ["b"]}}'
    calls = []

    def fake_download(repo_id, filename, repo_type, revision, local_dir):
        calls.append((repo_id, filename, repo_type, revision))
        p = Path(local_dir) / filename
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(body)
        return str(p)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    rev = "a" * 40
    good = D.HubFile("org/data", "dir/x.json", "out/x.json", rev, _sha(body))
    ctx = F.fetch("h", tmp_path, sources={"h": C.Source("h", "", [good])}, progress=False)
    assert (tmp_path / "out" / "x.json").read_bytes() == body and calls == [("org/data", "dir/x.json", "dataset", rev)]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["files"]["out/x.json"] == _sha(body)
    assert manifest["sources"]["h"]["hub"]["org/data"] == {"revision": rev, "commit": rev}
    bad = D.HubFile("org/data", "dir/y.json", "out/y.json", rev, "f" * 64)
    with pytest.raises(D.FetchError, match="sha256 mismatch"):
        F.fetch("h2", tmp_path, sources={"h2": C.Source("h2", "", [bad])}, progress=False)
    assert not (tmp_path / "out" / "y.json").exists() and not (tmp_path / "out" / "y.json.part").exists()
    assert ctx.fetched == 1


def test_zip_members_are_extracted_atomically_and_recorded(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("annotations/instances_val2014.json", '{"images": []}')
        zf.writestr("annotations/other.json", "{}")
    (tmp_path / "ann.zip").write_bytes(buf.getvalue())
    ctx = D.FetchContext(tmp_path, "t", D.Manifest(tmp_path), progress=False)
    D.extract_zip_members("ann.zip", {"annotations/instances_val2014.json": "coco/annotations/instances_val2014.json"})(ctx)
    ctx.manifest.save()
    out = tmp_path / "coco" / "annotations" / "instances_val2014.json"
    assert out.read_text() == '{"images": []}' and not (tmp_path / "coco" / "annotations" / "other.json").exists()
    assert json.loads((tmp_path / "manifest.json").read_text())["files"]["coco/annotations/instances_val2014.json"] \
        == _sha(out.read_bytes())


def test_archive_images_are_flattened_and_nothing_escapes_the_target(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in (("imgs/sub/7.jpg", b"seven"), ("../evil.jpg", b"evil"), ("imgs/readme.txt", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("imgs/link.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "imgs.tar.gz").write_bytes(buf.getvalue())
    ctx = D.FetchContext(tmp_path / "src", "t", D.Manifest(tmp_path / "src"), progress=False)
    D.extract_archive_flat("imgs.tar.gz", "out")(ctx)
    out = tmp_path / "src" / "out"
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["7.jpg", "evil.jpg"]
    assert (out / "7.jpg").read_bytes() == b"seven" and not (tmp_path / "evil.jpg").exists()
    assert not (out / "link.jpg").exists()


def test_pinned_digests_match_the_reference_copies():
    pope = C.SOURCES["pope"].files[0]
    ref = TEST_DATA / "shared" / "reference" / "pope" / "coco_pope_random.json"
    assert pope.target == "pope/v3/coco_pope_random.json" and "08d957b917e5a378a2f99d35b6293c536a66298b" in pope.urls[0]
    assert sha256_file(ref) == pope.sha256 and ref.stat().st_size == pope.size
    opera = C.SOURCES["chair-sets"].files[0]
    ref = TEST_DATA / "shared" / "reference" / "chair" / "opera_llava-1.5_greedy_captions.jsonl"
    assert sha256_file(ref) == opera.sha256 and ref.stat().st_size == opera.size


def test_every_source_is_declared_with_targets_and_the_opa_entry_is_manual():
    assert {"coco-val2014", "pope", "vg", "shr", "mhalubench", "nltk", "hadpo-data", "povid-data", "hsa-dpo-data",
            "opa-dpo-data"} <= set(C.SOURCES)
    for src in C.SOURCES.values():
        for f in src.files:
            assert not Path(getattr(f, "target", getattr(f, "target_dir", ""))).is_absolute()
    assert C.SOURCES["opa-dpo-data"].manual and "drive.google.com" in C.SOURCES["opa-dpo-data"].manual
    assert "--from" in C.describe_sources() or "opa-dpo-data" in C.describe_sources()


def test_chair_sets_and_protocol_image_list_are_derived_from_the_fetched_files(tmp_path, monkeypatch):
    (tmp_path / "chair" / "sources").mkdir(parents=True)
    (tmp_path / "pope" / "v3").mkdir(parents=True)
    ref = TEST_DATA / "shared" / "reference"
    (tmp_path / "chair" / "sources" / "opera_llava-1.5_greedy_captions.jsonl").write_bytes(
        (ref / "chair" / "opera_llava-1.5_greedy_captions.jsonl").read_bytes())
    (tmp_path / "chair" / "sources" / "lim_chair-500.jsonl").write_text(
        '{"question_id": 0, "image": "000000002239.jpg", "text": "Please describe this image in detail."}\n')
    (tmp_path / "pope" / "v3" / "coco_pope_random.json").write_bytes((ref / "pope" / "coco_pope_random.json").read_bytes())
    ctx = D.FetchContext(tmp_path, "coco-val2014", D.Manifest(tmp_path), progress=False)
    V.derive_chair_sets(ctx)
    opera = [json.loads(x) for x in (tmp_path / "chair" / "opera_500.jsonl").read_text().splitlines()]
    assert len(opera) == 500 and opera[0] == {"image_id": 226988, "image": "COCO_val2014_000000226988.jpg"}
    lim = [json.loads(x) for x in (tmp_path / "chair" / "lim_chair-500.jsonl").read_text().splitlines()]
    assert lim == [{"image_id": 2239, "image": "COCO_val2014_000000002239.jpg"}]
    jobs = []
    monkeypatch.setattr(V, "download_many", lambda c, j, what: jobs.extend(j))
    V.coco_protocol_images(ctx)
    urls = dict((rel, url) for url, rel in jobs)
    assert len(urls) == len({*(r["image"] for r in opera), *(r["image"] for r in lim), *(
        json.loads(x)["image"] for x in (tmp_path / "pope" / "v3" / "coco_pope_random.json").read_text().splitlines())})
    assert urls["coco/val2014/COCO_val2014_000000310196.jpg"] == \
        "http://images.cocodataset.org/val2014/COCO_val2014_000000310196.jpg"


def test_shr_conversion_writes_the_harness_layout(tmp_path, monkeypatch):
    raw = tmp_path / "shr" / "raw"
    raw.mkdir(parents=True)
    (raw / "val_images_final.json").write_text(json.dumps([{"image_id": 5}, {"image_id": 9}]))
    (raw / "shr_factual_part1.jsonl").write_text('{"5": ["A dog sits."]}\n')
    (raw / "shr_factual_part2.jsonl").write_text('{"9": ["Two cups."]}\n')
    (tmp_path / "vg").mkdir()
    (tmp_path / "vg" / "image_data.json").write_text(json.dumps(
        [{"image_id": i, "url": f"http://x/{i}.jpg", "width": 100, "height": 50} for i in (1, 5, 9)]))
    (tmp_path / "vg" / "region_descriptions.json").write_text(json.dumps(
        [{"id": 5, "regions": [{"region_id": 1, "image_id": 5, "x": 1, "y": 2, "width": 3, "height": 4,
                                "phrase": "a dog"}]}, {"id": 2, "regions": []}]))
    jobs = []
    monkeypatch.setattr(V, "download_many", lambda c, j, what: jobs.extend(j))
    ctx = D.FetchContext(tmp_path, "shr", D.Manifest(tmp_path), progress=False)
    V.shr_convert(ctx)
    assert jobs == [("http://x/5.jpg", "vg/images/5.jpg"), ("http://x/9.jpg", "vg/images/9.jpg")]
    rows = {n: [json.loads(x) for x in (tmp_path / "shr" / f"{n}.jsonl").read_text().splitlines()]
            for n in ("images", "regions", "facts")}
    assert rows["images"][0] == {"image_id": 5, "image": "vg/images/5.jpg", "width": 100, "height": 50}
    assert rows["regions"][0]["regions"] == [{"x": 1, "y": 2, "width": 3, "height": 4, "phrase": "a dog"}]
    assert rows["regions"][1]["regions"] == [] and rows["facts"][1] == {"image_id": 9, "facts": ["Two cups."]}
    from metrics.shr import render_regions

    assert render_regions(rows["regions"][0]["regions"], 100, 50) == "[0.01, 0.04, 0.04, 0.12]: a dog\n"


def test_iter_json_array_streams_across_chunk_boundaries(tmp_path):
    data = [{"id": i, "regions": [{"phrase": "a red bus " * (i % 7), "x": i * 1.5}]} for i in range(200)]
    data += [1, 2.5, -3e-2, "x", [1, 2], None, True, 12345678901234567890]
    p = tmp_path / "a.json"
    for indent in (None, 1):
        p.write_text(json.dumps(data, indent=indent))
        for chunk in (1, 3, 64, 1 << 20):
            assert list(iter_json_array(p, chunk=chunk)) == data
    p.write_text('{"not": "an array"}')
    with pytest.raises(BenchError, match="not a JSON array"):
        list(iter_json_array(p))


def test_opa_entry_explains_the_manual_download_and_converts_a_local_copy(tmp_path, capsys):
    from PIL import Image

    from bench.data.formats import load_opa

    with pytest.raises(OfflineError, match="not downloadable automatically"):
        F.fetch("opa-dpo-data", tmp_path / "root", progress=False)
    assert V.OPA_DRIVE in capsys.readouterr().err
    buf = io.BytesIO()
    Image.new("RGB", (8, 6), (200, 10, 10)).save(buf, format="JPEG")
    import base64

    img = base64.b64encode(buf.getvalue()).decode()
    report = {"image_description": "a red square", "0": {"copied_content": "A red square.", "score": 4,
                                                           "error_type": "correct", "rewritten_content": "A red square."},
              "1": {"copied_content": "A blue cat.", "score": 1, "error_type": "image_recognition_error",
                    "rewritten_content": ""}, "Added": {"rewritten_content": "", "reason": ""}}
    rows = [{"image_id": 11, "query": "<image>\nDescribe.", "image_bytes": img, "standard_response": "A red square.",
             "original_generate_response": "A red square. A blue cat.", "AI_pseudo_response": "A red square.",
             "AI_json_report": report},
            {"image_id": 12, "query": "q", "image_bytes": img, "standard_response": "s",
             "original_generate_response": "A cat. A cat.", "AI_pseudo_response": "x", "AI_json_report": report},
            {"image_id": 13, "query": "q", "image_bytes": img, "standard_response": "s",
             "original_generate_response": "Fine.", "AI_pseudo_response": "", "AI_json_report": report}]
    src = tmp_path / "drive" / "rollouts"
    src.mkdir(parents=True)
    (src / "rollouts_1_0.json").write_text(json.dumps(rows))
    ctx = F.fetch("opa-dpo-data", tmp_path / "root", options={"from": str(tmp_path / "drive")}, progress=False)
    out = tmp_path / "root" / "opa-dpo" / "opadpo_data.jsonl"
    recs = load_opa(out)
    assert [r.id for r in recs] == ["11"] and recs[0].question == "Describe."
    assert recs[0].extra["sentences"][1]["score"] == 1 and recs[0].extra["revision"] == "A red square."
    assert Path(recs[0].image).suffix == ".jpg" and Path(recs[0].image).exists()
    assert ctx.manifest.data["sources"]["opa-dpo-data"]["dropped"] == {
        "empty report": 0, "repetitive rollout": 1, "empty revision": 1, "no image": 0}


def test_nltk_data_already_in_the_root_is_recorded_without_downloading(tmp_path, monkeypatch):
    import os
    import shutil

    import nltk

    beside = Path(__file__).resolve().parents[2] / "shared" / "reference" / "nltk_data"  # unzipped layout
    src = os.environ.get("BENCH_NLTK_DATA") or os.environ.get("NLTK_DATA") or str(beside)
    if not (Path(src) / "tokenizers" / "punkt_tab").exists():
        pytest.skip("NLTK data not found: set BENCH_NLTK_DATA (CI points it at ../shared/reference/nltk_data)")
    shutil.copytree(src, tmp_path / "nltk_data", ignore=shutil.ignore_patterns("*.md"))
    monkeypatch.setattr(nltk, "download", lambda *a, **k: pytest.fail("downloaded although present"))
    ctx = F.fetch("nltk", tmp_path, progress=False)
    assert ctx.present == 3 and not ctx.missing
    files = json.loads((tmp_path / "manifest.json").read_text())["files"]
    assert "nltk_data/corpora/wordnet.zip" in files
