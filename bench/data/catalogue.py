"""The pinned catalogue of ``bench data fetch``: :data:`SOURCES`, one declarative entry per data source.

An entry (:class:`Source`) lists its files — a URL with mirrors (:class:`~bench.data.download.UrlFile`), a
Hugging Face file or folder at a pinned revision (:class:`~bench.data.download.HubFile`,
:class:`~bench.data.download.HubFolder`) — the path under the data root each lands at, the sha256 when
one is published or pinned (the POPE and CHAIR files' digests are those of the byte-for-byte copies in
``shared/reference``; POVID's is the hub's LFS object id), the sources it requires, and the converter
steps that follow the downloads (:mod:`bench.data.convert`). ``python -m bench data fetch list`` prints it
(:func:`describe_sources`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from bench.data.convert import (OBJHAL_BLOB, OBJHAL_RAW, OBJHAL_REV, OPA_DRIVE, OPA_MANUAL, coco_protocol_images,
                                derive_chair_sets, hadpo_images, mmhal_check_images, nltk_step, objhal_convert,
                                opa_convert, povid_images, shr_convert)
from bench.data.download import FetchContext, HubFile, HubFolder, UrlFile, extract_archive_flat, extract_zip_members


@dataclass
class Source:
    name: str
    description: str
    files: list = field(default_factory=list)
    requires: list[str] = field(default_factory=list)
    post: list[Callable[[FetchContext], None]] = field(default_factory=list)
    manual: str | None = None  # instructions when the data cannot be fetched automatically
    licence: str = ""
    pinned: str = ""  # what the entry is pinned to, and what of it could be checked offline


# ------------------------------------------------------------------------------------------ SOURCES
POPE_V3 = "08d957b917e5a378a2f99d35b6293c536a66298b"
POPE_V1 = "e3e39262c85a6a83f26cf5094022a782cb0df58d"
POPE_FILES = {  # (version, split): (sha256, size) of shared/reference/pope copies (git show at the commits)
    ("v3", "random"): ("ac25245170b975a5bdf9080b23fd431dfe6be458bc038259c1f4f09a6bef7994", 368166),
    ("v3", "popular"): ("72c1a8ad45d0c13514f5f22598261df41d3b533854d29682e924db50ed8aa753", 370190),
    ("v3", "adversarial"): ("420b3407db1fa9f1187a805dca41cb7b97fd91504e6c2179706188c107fb8ef8", 370401),
    ("v1", "random"): ("c16b65d2df6d70bb0814c8a4375833d39cdb09928fd936d3fc546491efa37f35", 360212),
    ("v1", "popular"): ("5b16653023bf4f64d57eb0d168259de6627f5cde7538b85ebed3cc33034aa6cc", 370234),
    ("v1", "adversarial"): ("1d8f0906a9b50c05640f6f23abfac97523be2a1bed28f7eadc63b811699b2d26", 370459),
}
RAW = "https://raw.githubusercontent.com"
VG_HOSTS = ("https://homes.cs.washington.edu/~ranjay/visualgenome/data/dataset",
            "http://visualgenome.org/static/data/dataset")
COCO_ANN = {f"annotations/{k}_{s}2014.json": f"coco/annotations/{k}_{s}2014.json"
            for k in ("instances", "captions") for s in ("train", "val")}
AMBER_HF_REV = "f75c8afc54bdfaa2ecad4f1c04a23801113ec9e3"  # stzhao/amber: AMBER.zip (LFS sha256 below)
MHALU_REV = "03918b3536e972e838f1ab8e683e8d0153d85f16"
POVID_REV = "5a8be9420b40865a5d70aa38afeea23cbd947ade"
RLAIFV_REV = "83d917b2e8118ca8e7877a796d72af9bb3e6b356"
MMHAL_REV = "8c04a4a8ae40b80763eee9b3eadf115e2267bfa6"  # "Update loading script", Nov 2023: images/ + template
LLAVA_BENCH_REV = "9773b6fd2be88d4ced480dcd9bfd4ce76e47f79b"  # the hub's main (Jul 2023)


def _sources() -> dict[str, Source]:
    s: list[Source] = [
        Source("pope", "POPE question files: v3 (AoiDragon/POPE HEAD) and v1 (e3e3926, the LLaVA-1.5 version)",
               [UrlFile(f"pope/{v}/coco_pope_{sp}.json",
                        (f"{RAW}/AoiDragon/POPE/{POPE_V3 if v == 'v3' else POPE_V1}/output/coco/coco_pope_{sp}.json",),
                        sha, size) for (v, sp), (sha, size) in POPE_FILES.items()],
               licence="MIT (AoiDragon/POPE)",
               pinned=f"raw GitHub at {POPE_V3[:12]} (v3) / {POPE_V1[:12]} (v1); sha256 = shared/reference/pope copies"),
        Source("chair-sets", "CHAIR 500-image sets: OPERA's LLaVA-1.5 set and less-is-more's chair-500 → chair/*.jsonl",
               [UrlFile("chair/sources/opera_llava-1.5_greedy_captions.jsonl",
                        (f"{RAW}/shikiw/OPERA/61426efe4e2e53207f32d9112a86ba5f8364d1d9/log/chair_eval_results/llava-1.5/greedy.jsonl",),
                        "3d70bbefa95f1894a09e97e83f2a40531be39b12db50f4e2386c5bfc99842fdd", 259599),
                UrlFile("chair/sources/lim_chair-500.jsonl",
                        (f"{RAW}/yuezih/less-is-more/f26e187aadacc49a7cfc30443f0e9bae865b8e2e/CHAIR-eval/data/chair-500.jsonl",),
                        "d4002b206d2439d96c5955172551ee1129e179f17898f7248b8743ee98dbe32a", 60390)],
               post=[derive_chair_sets], licence="MIT (OPERA) / Apache-2.0 (less-is-more)",
               pinned="raw GitHub at shikiw/OPERA@61426ef, yuezih/less-is-more@f26e187; sha256 = shared/reference/chair copies"),
        Source("coco-val2014", "COCO 2014 annotations (train+val instances/captions) + the val2014 images of the POPE"
                               " and CHAIR protocols, one by one",
               [UrlFile("coco/annotations_trainval2014.zip",
                        ("http://images.cocodataset.org/annotations/annotations_trainval2014.zip",))],
               requires=["pope", "chair-sets"], post=[extract_zip_members("coco/annotations_trainval2014.zip", COCO_ANN),
                                                     coco_protocol_images],
               licence="annotations CC BY 4.0; images Flickr terms",
               pinned="images.cocodataset.org (no published digest: sha256 recorded on first fetch)"),
        Source("coco-val2014-full", "all 40,504 COCO val2014 images (val2014.zip, about 6 GB)",
               [UrlFile("coco/val2014.zip", ("http://images.cocodataset.org/zips/val2014.zip",))],
               post=[extract_archive_flat("coco/val2014.zip", "coco/val2014")], licence="Flickr terms",
               pinned="images.cocodataset.org (digest recorded on first fetch)"),
        Source("coco-train2014-full", "all COCO train2014 images (train2014.zip, about 13 GB) for pipelines on real COCO",
               [UrlFile("coco/train2014.zip", ("http://images.cocodataset.org/zips/train2014.zip",))],
               post=[extract_archive_flat("coco/train2014.zip", "coco/train2014")], licence="Flickr terms",
               pinned="images.cocodataset.org (digest recorded on first fetch)"),
        Source("vg", "Visual Genome v1.2 metadata: image_data.json + region_descriptions.json",
               [UrlFile(f"vg/{n}.json.zip", tuple(f"{h}/{n}.json.zip" for h in VG_HOSTS))
                for n in ("image_data", "region_descriptions")],
               post=[extract_zip_members("vg/image_data.json.zip", {"image_data.json": "vg/image_data.json"}),
                     extract_zip_members("vg/region_descriptions.json.zip",
                                         {"region_descriptions.json": "vg/region_descriptions.json"})],
               licence="CC BY 4.0", pinned="VG download host + visualgenome.org mirror (digest recorded on first fetch)"),
        Source("vg-images", "all Visual Genome images (images.zip + images2.zip, about 15 GB) → vg/images/<id>.jpg",
               [UrlFile(f"vg/{n}", (f"https://cs.stanford.edu/people/rak248/VG_100K_2/{n}",))
                for n in ("images.zip", "images2.zip")],
               post=[extract_archive_flat("vg/images.zip", "vg/images"), extract_archive_flat("vg/images2.zip", "vg/images")],
               licence="CC BY 4.0", pinned="cs.stanford.edu VG_100K_2 (digest recorded on first fetch)"),
        Source("shr", "SHR (HA-DPO): juliozhao/SHR image list + human facts, the SHR images from VG, converted to"
                      " shr/{images,regions,facts}.jsonl",
               [HubFile("juliozhao/SHR", n, f"shr/raw/{n}")
                for n in ("val_images_final.json", "shr_factual_part1.jsonl", "shr_factual_part2.jsonl")],
               requires=["vg"], post=[shr_convert], licence="Apache-2.0 (SHR); CC BY 4.0 (VG)",
               pinned="HF main (hub page: commit 44ac475, Dec 2023; full hash unknown, recorded at fetch)"),
        Source("mhalubench", "MHaluBench (openkg/MHaluBench): val v0.1/v0.2, train, image-to-text images (raw)",
               [HubFile("openkg/MHaluBench", n, f"mhalubench/raw/{n}", MHALU_REV)
                for n in ("MHaluBench_val-v0.1.json", "MHaluBench_val-v0.2.json", "MHaluBench_train.json")]
               + [HubFolder("openkg/MHaluBench", ("data/image-to-text/*",), "mhalubench/raw", MHALU_REV)],
               licence="MIT", pinned=f"HF revision {MHALU_REV[:12]} (from the hub's file pages)"),
        Source("mmhal", "MMHal-Bench: the 96-question answer template (RLAIF-V's copy) + its images (Shengcao1006/MMHal-Bench)",
               [UrlFile("mmhal/response_template.json",
                        (f"{RAW}/RLHF-V/RLAIF-V/{RLAIFV_REV}/eval/data/mmhal-bench_answer_template.json",),
                        "28ed24e19ffef292597c35f1dad37760b2e0a088b3b40ca3b50f105fc1b951bb", 50519),
                HubFolder("Shengcao1006/MMHal-Bench", ("images/*",), "mmhal", MMHAL_REV)],
               post=[mmhal_check_images], licence="Apache-2.0 (MMHal-Bench)",
               pinned=f"raw GitHub at RLHF-V/RLAIF-V@{RLAIFV_REV[:12]} (sha256 of that blob); images HF revision"
                      f" {MMHAL_REV[:12]} (digests recorded at fetch)"),
        Source("llava-bench", "LLaVA-Bench (in-the-wild): questions, context, GPT-4 reference answers, 24 images"
                              " (liuhaotian/llava-bench-in-the-wild)",
               [HubFile("liuhaotian/llava-bench-in-the-wild", n, f"llava-bench/{n}", LLAVA_BENCH_REV)
                for n in ("questions.jsonl", "context.jsonl", "answers_gpt4.jsonl")]
               + [HubFolder("liuhaotian/llava-bench-in-the-wild", ("images/*",), "llava-bench", LLAVA_BENCH_REV)],
               licence="Apache-2.0", pinned=f"HF revision {LLAVA_BENCH_REV[:12]} (digests recorded at fetch)"),
        Source("amber", "AMBER's 1004 images (AMBER.zip) → amber/images/AMBER_<n>.jpg; annotations and queries ship"
                        " with the package (metrics/data/amber)",
               [HubFile("stzhao/amber", "AMBER.zip", "amber/AMBER.zip", AMBER_HF_REV,
                        "b4b95686f4f562eab09d449c2e6483df4071e312e73394a2741d5f76f851489c")],
               post=[extract_archive_flat("amber/AMBER.zip", "amber/images")], licence="Apache-2.0 (junyangwang0410/AMBER)",
               pinned=f"HF mirror stzhao/amber@{AMBER_HF_REV[:12]}, sha256 = its LFS object id (415095542 bytes); the"
                      " authors' original is a Google Drive file (README of junyangwang0410/AMBER@534babf) with no"
                      " published digest, so the mirror's contents could not be compared with it offline"),
        Source("objhal", "Object HalBench: RLAIF-V's 300-question file with base64 images → objhal/questions.jsonl +"
                         " objhal/images/; ground truth from the COCO 2014 annotations",
               [UrlFile(OBJHAL_RAW, (f"{RAW}/RLHF-V/RLAIF-V/{OBJHAL_REV}/eval/data/obj_halbench_300_with_image.jsonl",))],
               requires=["coco-val2014"], post=[objhal_convert], licence="CC BY-NC 4.0 (RLAIF-V data); COCO terms",
               pinned=f"raw GitHub at RLAIF-V@{OBJHAL_REV[:12]}, checked against git blob {OBJHAL_BLOB[:12]} (sha256"
                      " recorded at first fetch)"),
        Source("nltk", "NLTK data for CHAIR's WordNet flavour: punkt_tab, averaged_perceptron_tagger_eng, wordnet",
               post=[nltk_step], licence="see the NLTK data index",
               pinned="nltk.download (its index; no digest pinned here, recorded at fetch)"),
        Source("hadpo-data", "HA-DPO released data (juliozhao/hadpo-data): desc_data.json + pope_data.json per model",
               [HubFile("juliozhao/hadpo-data", f"hadpo/{m}/{n}", f"hadpo/{m}/{n}")
                for m in ("llava-v1.5", "instructblip", "minigpt4") for n in ("desc_data.json", "pope_data.json")],
               post=[hadpo_images], licence="Apache-2.0",
               pinned="HF main (hub page: commit 86ff645; full hash unknown, recorded at fetch)"),
        Source("povid-data", "POVID released preference data (YiyangAiLab/POVID_preference_data_for_VLLMs, _version_1)",
               [HubFile("YiyangAiLab/POVID_preference_data_for_VLLMs", "POVID_preference_data_for_VLLMs_version_1.json",
                        "povid/POVID_preference_data_for_VLLMs_version_1.json", POVID_REV,
                        "e97667408d768e2046bdba6ee25fbb66bff3548fab5144bc1d04b222b2732f85")],
               post=[povid_images], licence="CC BY 4.0",
               pinned=f"HF revision {POVID_REV[:12]}; sha256 = the hub's LFS object id (size 20878161)"),
        Source("hsa-dpo-data", "HSA-DPO released data (WenyiXiao/HSA-DPO): preference + detection JSONL, images tar",
               [HubFile("WenyiXiao/HSA-DPO", n, f"hsa-dpo/{n}") for n in
                ("hsa_dpo_preference_llava1dot5.jsonl", "hsa_dpo_detection.jsonl", "hsa_dpo_imgs.tar.gz")],
               post=[extract_archive_flat("hsa-dpo/hsa_dpo_imgs.tar.gz", "hsa-dpo")],
               licence="see the dataset card", pinned="HF main (no commit known here; recorded at fetch)"),
        Source("opa-dpo-data", "OPA-DPO rollouts + GPT-4V feedback (Google Drive only; --from converts a local copy)",
               post=[opa_convert], manual=OPA_MANUAL, licence="see zhyang2226/OPA-DPO",
               pinned=f"Google Drive folder {OPA_DRIVE} (not fetchable)"),
    ]
    return {x.name: x for x in s}


SOURCES: dict[str, Source] = _sources()


def describe_sources() -> str:
    lines = []
    for src in SOURCES.values():
        lines.append(f"{src.name:<20} {src.description}")
        for f in src.files:
            if isinstance(f, UrlFile):
                lines.append(f"    {f.target:<58} {f.urls[0]}" + (f"  sha256 {f.sha256[:16]}…" if f.sha256 else ""))
            elif isinstance(f, HubFile):
                lines.append(f"    {f.target:<58} hf://{f.repo}/{f.path}@{f.revision[:12]}"
                             + (f"  sha256 {f.sha256[:16]}…" if f.sha256 else ""))
            else:
                lines.append(f"    {f.target_dir + '/':<58} hf://{f.repo}@{f.revision[:12]} {list(f.patterns)}")
        if src.requires:
            lines.append(f"    requires: {', '.join(src.requires)}")
        lines.append(f"    pinned: {src.pinned}; licence: {src.licence}")
    return "\n".join(lines)
