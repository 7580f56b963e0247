"""Converters of ``bench data fetch``: the steps that run after a source's files are downloaded.

Each step is a function of the :class:`~bench.data.download.FetchContext` (or a factory returning one),
named in a :data:`~bench.data.catalogue.SOURCES` entry's ``post`` list: it turns a released file into the
layout the benchmarks and loaders read (``docs/CONVENTIONS.md``), records every file it writes in the
manifest, and fetches per-image files when ``--with-images`` asks for them. Conversions are deterministic
and idempotent (a rerun rewrites the same bytes).

Pins a converter verifies itself live here (Object HalBench's git blob id: no sha256 is published for it);
the catalogue imports them. ``opa-dpo-data`` cannot be fetched (Google Drive only): :data:`OPA_MANUAL`
says where to get it and :func:`opa_convert` converts a local copy given with ``--from``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import sys
from pathlib import Path

from PIL import Image

from bench.data.download import FetchContext, FetchError, download_many, record_written
from bench.data.pipelines.base import place_image
from bench.data.pipelines.opa_dpo import repetitive
from bench.errors import BenchError, DataError, OfflineError
from bench.io import confined_path, iter_json_array, read_json, sha256_file, write_jsonl


# ------------------------------------------------------------------------------------------ per-source steps
OBJHAL_REV = "83d917b2e8118ca8e7877a796d72af9bb3e6b356"  # RLHF-V/RLAIF-V
OBJHAL_BLOB = "cb8e15a81a1ddf720f306fda0decefb1ed80c31f"  # git blob id of obj_halbench_300_with_image.jsonl there
OBJHAL_RAW = "objhal/raw/obj_halbench_300_with_image.jsonl"


def coco_val_name(image_id: int) -> str:
    return f"COCO_val2014_{int(image_id):012d}.jpg"


def derive_chair_sets(ctx: FetchContext) -> None:
    """``chair/opera_500.jsonl`` and ``chair/lim_chair-500.jsonl``: ``{"image_id", "image"}`` per line."""
    pairs = [("chair/sources/opera_llava-1.5_greedy_captions.jsonl", "chair/opera_500.jsonl", "image_id"),
             ("chair/sources/lim_chair-500.jsonl", "chair/lim_chair-500.jsonl", "image")]
    for src, dest, key in pairs:
        if not (ctx.root / src).exists():
            continue  # reported as missing by the download step
        rows, seen = [], set()
        for line in (ctx.root / src).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            image_id = int(re.sub(r"\D", "", str(rec[key]).rsplit(".", 1)[0]) if key == "image" else rec[key])
            if image_id not in seen:
                seen.add(image_id)
                rows.append({"image_id": image_id, "image": coco_val_name(image_id)})
        write_jsonl(ctx.root / dest, rows)
        record_written(ctx, dest)


def coco_protocol_images(ctx: FetchContext) -> None:
    """The COCO val2014 images the POPE (v3 + v1) and CHAIR (OPERA, less-is-more) protocols use."""
    names: set[str] = set()
    for rel in [f"pope/{v}/coco_pope_{s}.json" for v in ("v3", "v1") for s in ("random", "popular", "adversarial")]:
        p = ctx.root / rel
        if p.exists():
            names |= {json.loads(line)["image"] for line in p.read_text().splitlines() if line.strip()}
    for rel in ("chair/opera_500.jsonl", "chair/lim_chair-500.jsonl"):
        p = ctx.root / rel
        if p.exists():
            names |= {json.loads(line)["image"] for line in p.read_text().splitlines() if line.strip()}
    jobs = [(f"http://images.cocodataset.org/val2014/{n}", f"coco/val2014/{n}") for n in sorted(names)]
    download_many(ctx, jobs, "COCO val2014 protocol images")


def _vg_meta(ctx: FetchContext, ids: set[str]) -> dict[str, dict]:
    meta_path = ctx.root / "vg" / "image_data.json"
    if not meta_path.exists():
        raise OfflineError(f"{meta_path} missing: run `python -m bench data fetch vg --root {ctx.root}` first")
    out = {}
    for row in iter_json_array(meta_path):
        iid = str(row.get("image_id", row.get("id")))
        if iid in ids:
            out[iid] = row
    return out


def vg_image_jobs(ctx: FetchContext, ids: set[str]) -> list[tuple[str, str]]:
    meta = _vg_meta(ctx, ids)
    jobs = []
    for iid in sorted(ids, key=lambda s: int(s) if s.isdigit() else 0):
        url = meta.get(iid, {}).get("url")
        if url:
            jobs.append((url, f"vg/images/{iid}.jpg"))
        else:
            print(f"warning: VG image {iid} has no url in image_data.json", file=sys.stderr)
    return jobs


def shr_convert(ctx: FetchContext) -> None:
    """Real SHR → the harness layout ``shr/{images,regions,facts}.jsonl`` (metrics/shr.py), with the SHR
    images downloaded one by one from the ``url`` of VG's ``image_data.json``.

    Inputs as read by ``ha_dpo/shr_eval/json_eval.py`` (benchmarks.md §3.1): ``val_images_final.json`` = a
    list of dicts with ``image_id`` (VG id); ``shr_factual_part{1,2}.jsonl`` = lines ``{"<image_id>":
    [facts]}``; width/height from ``image_data.json``; regions from ``region_descriptions.json``.
    Written to that documented schema; not run against the real files here (no network)."""
    raw = ctx.root / "shr" / "raw"
    val = raw / "val_images_final.json"
    if not val.exists():
        return
    ids = [str(r["image_id"]) if isinstance(r, dict) else str(r) for r in read_json(val)]
    idset = set(ids)
    download_many(ctx, vg_image_jobs(ctx, idset), "SHR images (Visual Genome)")
    meta = _vg_meta(ctx, idset)
    regions: dict[str, list] = {}
    reg_path = ctx.root / "vg" / "region_descriptions.json"
    if not reg_path.exists():
        ctx.note_missing("vg/region_descriptions.json", "run the vg fetch first")
        return
    for row in iter_json_array(reg_path):
        iid = str(row.get("id", row.get("image_id")))
        if iid in idset:
            regions[iid] = [{"x": r["x"], "y": r["y"], "width": r["width"], "height": r["height"],
                             "phrase": r.get("phrase", "")} for r in row.get("regions", [])]
    facts: dict[str, list] = {}
    for part in ("shr_factual_part1.jsonl", "shr_factual_part2.jsonl"):
        p = raw / part
        if p.exists():
            for line in p.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    for k, v in json.loads(line).items():
                        facts.setdefault(str(k), []).extend(v)
    bad = [i for i in ids if Path(f"{i}.jpg").name != f"{i}.jpg" or i in ("", ".", "..")]
    if bad:
        raise DataError(val, f"image ids that are not plain file names: {bad[:3]}")
    images = [{"image_id": int(i) if i.isdigit() else i, "image": f"vg/images/{i}.jpg",
               "width": meta.get(i, {}).get("width"), "height": meta.get(i, {}).get("height")} for i in ids]
    write_jsonl(ctx.root / "shr" / "images.jsonl", images)
    write_jsonl(ctx.root / "shr" / "regions.jsonl",
                [{"image_id": r["image_id"], "regions": regions.get(str(r["image_id"]), [])} for r in images])
    write_jsonl(ctx.root / "shr" / "facts.jsonl",
                [{"image_id": r["image_id"], "facts": facts.get(str(r["image_id"]), [])} for r in images])
    for name in ("images.jsonl", "regions.jsonl", "facts.jsonl"):
        record_written(ctx, f"shr/{name}")
    ctx.log(f"SHR: {len(images)} images, {sum(1 for i in ids if i in regions)} with regions,"
            f" {sum(1 for i in ids if i in facts)} with facts -> shr/*.jsonl")


def _ids_from_hadpo(ctx: FetchContext) -> set[str]:
    ids: set[str] = set()
    folder = ctx.root / "hadpo" / "llava-v1.5"
    if (folder / "desc_data.json").exists():
        desc = read_json(folder / "desc_data.json")
        ids |= {str(k) for k in desc} if isinstance(desc, dict) else {str(d["image_id"]) for d in desc}
    if (folder / "pope_data.json").exists():
        ids |= {str(r["image_id"]) for r in read_json(folder / "pope_data.json")}
    return ids


def hadpo_images(ctx: FetchContext) -> None:
    """``--with-images``: the VG images of ``hadpo/llava-v1.5`` (urls from ``image_data.json``), hard
    linked next to the JSON files where :func:`bench.data.formats.load_hadpo` looks for them."""
    if not ctx.options.get("with_images"):
        ctx.log("hadpo-data: images not fetched (add --with-images: Visual Genome images via image_data.json)")
        return
    ids = _ids_from_hadpo(ctx)
    download_many(ctx, vg_image_jobs(ctx, ids), "HA-DPO images (Visual Genome)")
    for iid in ids:
        src = ctx.root / "vg" / "images" / f"{iid}.jpg"
        if src.exists():
            place_image(src, ctx.root / "hadpo" / "llava-v1.5" / f"{iid}.jpg")


def objhal_convert(ctx: FetchContext) -> None:
    """Object HalBench's released question file (one JSON object per line: ``image_id``, ``question``, the
    image as base64 ``image``) → ``objhal/images/<image_id>.jpg`` + ``objhal/questions.jsonl``. The file is
    checked against its git blob id at the pinned commit (no sha256 is published)."""
    src = ctx.root / OBJHAL_RAW
    raw = src.read_bytes()
    blob = hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()
    if blob != OBJHAL_BLOB:
        raise FetchError(f"{src}: git blob id {blob[:12]} differs from {OBJHAL_BLOB[:12]} (RLAIF-V@{OBJHAL_REV[:7]})")
    rows = []
    for line_no, line in enumerate(raw.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            rel = f"objhal/images/{int(rec['image_id'])}.jpg"
            image, question = base64.b64decode(rec["image"]), rec["question"]
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(src, f"not an Object HalBench question row ({exc})", line=line_no) from None
        dest = ctx.root / rel
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            part = dest.with_name(dest.name + ".part")
            part.write_bytes(image)
            os.replace(part, dest)
        record_written(ctx, rel)
        rows.append({"image_id": int(rec["image_id"]), "question": question, "image": rel})
    write_jsonl(ctx.root / "objhal" / "questions.jsonl", rows)
    record_written(ctx, "objhal/questions.jsonl")
    ctx.manifest.save()
    ctx.log(f"objhal: {len(rows)} questions, images under objhal/images/")


def povid_images(ctx: FetchContext) -> None:
    """``--with-images``: the COCO train2014 images of the POVID file, one by one, into
    ``coco/train2014/`` (ids are ``COCO_train2014_<12 digits>``)."""
    if not ctx.options.get("with_images"):
        ctx.log("povid-data: images not fetched (add --with-images: COCO train2014 images one by one)")
        return
    path = ctx.root / "povid" / "POVID_preference_data_for_VLLMs_version_1.json"
    if not path.exists():
        return
    names = set()
    for rec in read_json(path):
        rid = str(rec.get("id", ""))
        if re.fullmatch(r"COCO_train2014_\d{12}", rid):
            names.add(rid + ".jpg")
    jobs = [(f"http://images.cocodataset.org/train2014/{n}", f"coco/train2014/{n}") for n in sorted(names)]
    download_many(ctx, jobs, "POVID images (COCO train2014)")


def nltk_step(ctx: FetchContext) -> None:
    """``nltk.download`` of punkt_tab, averaged_perceptron_tagger_eng, wordnet into ``root/nltk_data``."""
    target = ctx.root / "nltk_data"
    wanted = {"punkt_tab": "tokenizers/punkt_tab/english/", "averaged_perceptron_tagger_eng":
              "taggers/averaged_perceptron_tagger_eng/", "wordnet": "corpora/wordnet.zip"}
    import nltk  # imported on use: slow to import, and only this step needs it (start-up time)

    def have(res: str) -> bool:  # NLTK's own layout under target (nltk.data.find mishandles zips with paths=)
        p = target / res
        return p.is_file() if res.endswith(".zip") else p.is_dir() and any(p.iterdir())

    failed = ""
    for pkg, res in wanted.items():
        if have(res):
            ctx.present += 1
            continue
        if ctx.offline or failed:
            ctx.note_missing(f"nltk_data/{res}", failed or "offline mode")
            continue
        ctx.log(f"nltk.download({pkg!r}, download_dir={str(target)!r})")
        try:
            ok = nltk.download(pkg, download_dir=str(target), quiet=True, raise_on_error=True,
                               print_error_to=io.StringIO())
        except Exception as exc:  # nltk raises ValueError/URLError/OSError variously when offline
            ok = False
            why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        else:
            why = "nltk.download returned False"
        if not ok or not have(res):
            failed = f"NLTK download failed ({why[:160]})"
            ctx.note_missing(f"nltk_data/{res}", failed)
        else:
            ctx.fetched += 1
    for p in sorted(target.rglob("*")) if target.exists() else []:
        if p.is_file():
            ctx.manifest.data["files"][p.relative_to(ctx.root).as_posix()] = sha256_file(p)
    ctx.manifest.save()
    if not ctx.missing:
        print(f"NLTK data in {target}: export BENCH_NLTK_DATA={target}", file=sys.stderr)


def mmhal_check_images(ctx: FetchContext) -> None:
    """Every image the MMHal-Bench template names (``basename(image_src)``) must be under ``mmhal/images/``."""
    template = ctx.root / "mmhal" / "response_template.json"
    if not template.exists():
        return
    names = [str(r.get("image_src", "")).split("?", 1)[0].rsplit("/", 1)[-1] for r in read_json(template)]
    for name in names:
        if not (ctx.root / "mmhal" / "images" / name).exists():
            ctx.note_missing(f"mmhal/images/{name}", "not in the MMHal-Bench image folder")


# ------------------------------------------------------------------------------------------ OPA-DPO (manual)
OPA_DRIVE = "https://drive.google.com/drive/folders/1Xmrb43zIbk3IzLLRQx65iBf7J4SHXa9j"
OPA_MANUAL = f"""OPA-DPO's data cannot be fetched automatically: the authors publish their LLaVA-1.5 rollouts with
GPT-4V feedback only in a Google Drive folder (README of zhyang2226/OPA-DPO@db90180, badge "Dataset"):
  {OPA_DRIVE}
There is no Hugging Face mirror, no pinned URL and no published digest, so `bench` does not pretend to
download it. Either
  1. download the folder by hand (a browser, or `gdown --folder <url>`), then convert it here with
       python -m bench data fetch opa-dpo-data --from <downloaded folder> --root <root>
     (<downloaded folder> = the rollouts JSON files the seed's make_opadpo_dataset.py reads, or a dataset
     it saved with save_to_disk, e.g. opadpo_training_data-7B); or
  2. build OPA-DPO data yourself with the on-policy pipeline:
       python -m bench data build opa-dpo --model llava-7b --feedback openai --out <dir>"""


def _opa_rows_from(path: Path) -> list[dict]:
    if (path / "state.json").exists() or (path / "dataset_info.json").exists():
        from datasets import load_from_disk  # optional dependency: only for a dataset saved with save_to_disk

        ds = load_from_disk(str(path))
        return [dict(r) for r in ds]
    rows: list[dict] = []
    files = sorted(path.rglob("*.json")) if path.is_dir() else [path]
    for f in files:
        data = read_json(f)
        if isinstance(data, list):
            rows.extend(r for r in data if isinstance(r, dict))
    return rows


def opa_convert(ctx: FetchContext) -> None:
    """``--from``: OPA-DPO rollouts (JSON lists) or a saved dataset → ``opa-dpo/opadpo_data.jsonl`` in the
    layout :func:`bench.data.formats.load_opa` reads (image bytes written to ``opa-dpo/images/``), with
    the seed's three filters (empty report, repeated last sentence / word, empty revision)."""
    src = ctx.options.get("from")
    if not src:
        raise OfflineError("opa-dpo-data cannot be downloaded automatically (Google Drive only); run"
                           f" `python -m bench data fetch opa-dpo-data --from <folder> --root {ctx.root}` with a"
                           f" manual download from {OPA_DRIVE}")
    src = Path(src)
    if not src.exists():
        raise BenchError(f"{src}: not found")
    rows = _opa_rows_from(src)
    out_rows, dropped = [], {"empty report": 0, "repetitive rollout": 0, "empty revision": 0, "no image": 0}
    (ctx.root / "opa-dpo" / "images").mkdir(parents=True, exist_ok=True)
    for k, row in enumerate(rows):
        report = row.get("AI_json_report")
        report_s = report if isinstance(report, str) else json.dumps(report, ensure_ascii=False)
        if report_s in ('""', "", "null"):
            dropped["empty report"] += 1
            continue
        rollout = str(row.get("original_generate_response", ""))
        if repetitive(rollout):
            dropped["repetitive rollout"] += 1
            continue
        revision = row.get("AI_pseudo_response")
        if not isinstance(revision, str) or not revision:
            dropped["empty revision"] += 1
            continue
        data = row.get("image_bytes")
        if not data:
            dropped["no image"] += 1
            continue
        raw = base64.b64decode(data) if isinstance(data, str) else bytes(data)
        fmt = (Image.open(io.BytesIO(raw)).format or "PNG").lower()
        ext = {"jpeg": ".jpg"}.get(fmt, "." + fmt)
        name = f"{row.get('image_id', k)}{ext}"
        try:  # image_id comes from the input file: it may not name a path outside opa-dpo/images/
            if Path(name).name != name:
                raise BenchError("not a plain file name")
            dest = confined_path(ctx.root / "opa-dpo" / "images", name, "image_id")
        except BenchError as exc:
            raise DataError(src, f"record {k}: image_id {row.get('image_id')!r} cannot name an image file ({exc})",
                            field="image_id") from None
        rel = f"images/{name}"
        part = dest.with_name(dest.name + ".part")
        part.write_bytes(raw)
        os.replace(part, dest)
        query = str(row.get("queries", row.get("query", "")))
        out_rows.append({"id": str(row.get("image_id", k)), "image": rel, "queries": query,
                         "standard_response": row.get("standard_response", ""),
                         "original_generate_response": rollout, "AI_pseudo_response": revision,
                         "AI_json_report": report_s})
    write_jsonl(ctx.root / "opa-dpo" / "opadpo_data.jsonl", out_rows)
    for p in sorted((ctx.root / "opa-dpo").rglob("*")):
        if p.is_file():
            ctx.manifest.data["files"][p.relative_to(ctx.root).as_posix()] = sha256_file(p)
    ctx.manifest.source("opa-dpo-data", {"converted_from": str(src), "rows": len(out_rows), "dropped": dropped})
    ctx.fetched += len(out_rows)
    print(f"opa-dpo-data: {len(out_rows)} records -> {ctx.root / 'opa-dpo' / 'opadpo_data.jsonl'}"
          f" (dropped: {', '.join(f'{k} {v}' for k, v in dropped.items() if v) or 'none'})", file=sys.stderr)
