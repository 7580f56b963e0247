"""Released data formats → PreferenceRecord: seed semantics (HA-DPO's draws, OPA's sentence report),
schema errors naming file, line/record and field, and each method's dispatch (own format + our JSONL)."""

import json
import random
from pathlib import Path

import pytest
from PIL import Image

import methods  # noqa: F401
from bench.data import formats
from bench.errors import DataError
from bench.registry import METHODS


def png(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 8), (10, 200, 30)).save(path)
    return path


# --------------------------------------------------------------------------------------------------- HA-DPO
def _hadpo(tmp_path, desc=None, pope=None):
    desc = desc if desc is not None else {
        "11": {"chosen": ["c11a", "c11b", "c11c"], "rejected": ["r11a", "r11b"]},
        "7": {"chosen": ["c7a", "c7b"], "rejected": ["r7a", "r7b", "r7c", "r7d"]}}
    pope = pope if pope is not None else [
        {"image_id": 11, "question": "Is there a cup in the image?", "chosen": "No, there is no cup.",
         "reject": "Yes, there is a cup.", "answer": "Yes", "correct": False},
        {"image_id": 7, "question": "Is there a dog?", "chosen": "Yes.", "reject": "No.", "answer": "Yes",
         "correct": True}]
    (tmp_path / "desc_data.json").write_text(json.dumps(desc))
    (tmp_path / "pope_data.json").write_text(json.dumps(pope))
    for iid in (11, 7):
        png(tmp_path / f"{iid}.png")
    return tmp_path


def test_hadpo_draws_chosen_rejected_prompt_per_image_in_the_seed_order_and_doubles_descriptions(tmp_path):
    recs = formats.load_hadpo(*(_hadpo(tmp_path) / n for n in ("desc_data.json", "pope_data.json")), tmp_path)
    rng = random.Random(42)  # the seed: random.seed(42); per image choice(chosen), choice(rejected), choice(prompt)
    expected = []
    for iid, c, r in (("11", ["c11a", "c11b", "c11c"], ["r11a", "r11b"]), ("7", ["c7a", "c7b"], ["r7a", "r7b", "r7c", "r7d"])):
        cc, rr = rng.choice(c), rng.choice(r)
        expected.append((iid, rng.choice(formats.HADPO_PROMPTS), cc, rr))
    assert [r.id for r in recs] == ["pope-11-1", "desc-11", "desc-7", "desc-11#2", "desc-7#2"]
    assert recs[0].question == "Is there a cup in the image?" and recs[0].rejected == "Yes, there is a cup."
    for rec, (iid, q, c, r) in zip(recs[1:3], expected):
        assert (rec.question, rec.chosen, rec.rejected) == (q, c, r) and rec.image.endswith(f"{iid}.png")
    assert [(r.question, r.chosen, r.rejected) for r in recs[3:]] == [(r.question, r.chosen, r.rejected) for r in recs[1:3]]
    assert "Take a look at this image and describe what you notice." in formats.HADPO_PROMPTS


def test_hadpo_reads_visual_genome_paths_from_image_data_json_and_the_list_layout(tmp_path):
    desc = [{"image_id": 5, "chosen": ["c"], "rejected": ["r"]}]
    (tmp_path / "desc_data.json").write_text(json.dumps(desc))
    (tmp_path / "image_data.json").write_text(json.dumps(
        [{"image_id": 5, "url": "https://cs.stanford.edu/people/rak248/VG_100K_2/5.jpg"}]))
    png(tmp_path / "VG_100K_2" / "5.jpg")
    recs = METHODS.get("ha-dpo")().load_records(tmp_path, METHODS.get("ha-dpo").config_cls())
    assert [Path(r.image).relative_to(tmp_path).as_posix() for r in recs] == ["VG_100K_2/5.jpg"] * 2


@pytest.mark.parametrize("mutate, match", [
    (lambda d, p: d["11"].update(chosen=[]), r"desc_data.json field 'chosen': image_id 11: expected a non-empty list"),
    (lambda d, p: p[0].pop("reject"), r"pope_data.json:1 field 'reject': missing field"),
    (lambda d, p: p[1].update(correct="no"), r"pope_data.json:2 field 'correct': expected true/false"),
    (lambda d, p: p[0].update(image_id=99), r"pope_data.json:1 field 'image_id': image of image_id 99 not found"),
])
def test_hadpo_schema_errors_name_file_record_and_field(tmp_path, mutate, match):
    desc = {"11": {"chosen": ["c"], "rejected": ["r"]}}
    pope = [{"image_id": 11, "question": "q", "chosen": "c", "reject": "r", "answer": "a", "correct": False},
            {"image_id": 7, "question": "q", "chosen": "c", "reject": "r", "answer": "a", "correct": True}]
    mutate(desc, pope)
    _hadpo(tmp_path, desc, pope)
    with pytest.raises(DataError, match=match):
        formats.load_any(tmp_path)


# ---------------------------------------------------------------------------------------------------- POVID
def _povid_row(i, image="images/a.png", q="<image>\nDescribe this image in detail.", rq=None):
    return {"id": f"COCO_train2014_{i:012d}", "image": image,
            "conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": f"good {i}"}],
            "rejected_conversations": [{"from": "human", "value": rq or q}, {"from": "gpt", "value": f"bad {i}"}]}


def test_povid_conversations_become_pairs_with_unique_ids(tmp_path):
    png(tmp_path / "images" / "a.png")
    (tmp_path / "povid.json").write_text(json.dumps([_povid_row(1), _povid_row(1), _povid_row(2)]))
    recs = METHODS.get("povid")().load_records(tmp_path / "povid.json", METHODS.get("povid").config_cls())
    assert [r.id for r in recs] == ["COCO_train2014_000000000001", "COCO_train2014_000000000001#2",
                                    "COCO_train2014_000000000002"]
    assert (recs[0].question, recs[0].chosen, recs[0].rejected) == ("Describe this image in detail.", "good 1", "bad 1")
    assert Path(recs[0].image) == tmp_path / "images" / "a.png"


@pytest.mark.parametrize("row, match", [
    (_povid_row(1, image="images/missing.png"), r"povid.json:1 field 'image': image file not found"),
    (_povid_row(1, rq="<image>\nOther question?"), r"povid.json:1 field 'rejected_conversations': the rejected"),
    ({**_povid_row(1), "conversations": [{"from": "human", "value": "q"}]}, r"povid.json:1 field 'conversations'"),
])
def test_povid_schema_errors_name_file_record_and_field(tmp_path, row, match):
    png(tmp_path / "images" / "a.png")
    (tmp_path / "povid.json").write_text(json.dumps([row]))
    with pytest.raises(DataError, match=match):
        formats.load_any(tmp_path / "povid.json")


# -------------------------------------------------------------------------------------------------- HSA-DPO
def test_hsa_rows_find_their_image_by_id_and_keep_raw_scores(tmp_path):
    png(tmp_path / "0.jpg")
    png(tmp_path / "1.png")
    rows = [{"id": 0, "question": "<image>\nDescribe.", "chosen": "c", "rejected": "r", "rejected_score": 2.5},
            {"id": 1, "question": "Describe.", "chosen": "c", "rejected": "r"}]
    (tmp_path / "hsa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    recs = METHODS.get("hsa-dpo")().load_records(tmp_path / "hsa.jsonl", None)
    assert [(r.id, r.question, r.rejected_score) for r in recs] == [("0", "Describe.", 2.5), ("1", "Describe.", None)]
    assert Path(recs[1].image).name == "1.png"


@pytest.mark.parametrize("row, match", [
    ({"id": 0, "question": "q", "chosen": "c", "rejected": "r", "rejected_score": "high"},
     r"hsa.jsonl:1 field 'rejected_score': score must be a finite number, got 'high'"),
    ({"id": 0, "question": "q", "chosen": "", "rejected": "r"}, r"hsa.jsonl:1 field 'chosen': empty text"),
    ({"id": 5, "question": "q", "chosen": "c", "rejected": "r"}, r"hsa.jsonl:1 field 'id': image file not found"),
])
def test_hsa_schema_errors_name_file_line_and_field(tmp_path, row, match):
    png(tmp_path / "0.jpg")
    (tmp_path / "hsa.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=match):
        formats.load_any(tmp_path / "hsa.jsonl")


# -------------------------------------------------------------------------------------------------- OPA-DPO
REPORT = {"image_description": "a dog and a cup",
          "0": {"copied_content": "A dog sits.", "score": 4, "error_type": "correct", "rewritten_content": "A dog sits."},
          "1": {"copied_content": "A fork lies", "score": 2, "error_type": "image_recognition_error",
                "rewritten_content": "A cup stands."},
          "Added": {"rewritten_content": "The table is brown.", "reason": "missing"}}


def _opa_row(**kw):
    row = {"id": "s1", "image": "images/a.png", "queries": "<image>\nDescribe the image.",
           "standard_response": "A dog and a cup.", "original_generate_response": "A dog sits.  A fork lies on it.",
           "AI_pseudo_response": "A dog sits. A cup stands. The table is brown.", "AI_json_report": json.dumps(REPORT)}
    row.update(kw)
    return row


def test_opa_report_becomes_sentences_covering_the_rollout(tmp_path):
    png(tmp_path / "images" / "a.png")
    (tmp_path / "opa.jsonl").write_text(json.dumps(_opa_row()) + "\n")
    (rec,) = METHODS.get("opa-dpo")().load_records(tmp_path / "opa.jsonl", None)
    assert rec.question == "Describe the image." and rec.chosen == rec.extra["gt"] == "A dog and a cup."
    assert rec.extra["rollout"] == rec.rejected == "A dog sits.  A fork lies on it."
    assert rec.extra["revision"] == "A dog sits. A cup stands. The table is brown." and rec.extra["added"] == "The table is brown."
    s = rec.extra["sentences"]
    # copied sentences completed against the rollout: the tail " on it." stays with the last sentence
    assert [x["copied"] for x in s] == ["A dog sits.", "A fork lies on it."]
    assert [(x["score"], x["error_type"]) for x in s] == [(4, "correct"), (2, "image_recognition_error")]


def test_complete_copied_follows_the_seed_and_keeps_the_tail():
    assert formats.complete_copied("Intro. A b. C d. tail", ["A b.", "", "C d."]) == ["Intro. A b.", "", "C d. tail"]
    assert formats.complete_copied("x y", ["not there"]) == ["not there"]


@pytest.mark.parametrize("row, match", [
    (_opa_row(AI_json_report="{oops"), r"opa.jsonl:1 field 'AI_json_report': AI_json_report is not JSON"),
    (_opa_row(AI_json_report=json.dumps({"0": {"copied_content": "x", "score": "4"}})),
     r"opa.jsonl:1 field 'AI_json_report': report entry '0': score must be a number in 1-4, got '4'"),
    (_opa_row(AI_json_report=json.dumps({"0": {"copied_content": "x", "score": 7}})), r"score must be a number in 1-4"),
    (_opa_row(AI_pseudo_response="", AI_json_report=json.dumps({"0": {"copied_content": "x", "rewritten_content": ""}})),
     r"opa.jsonl:1 field 'AI_pseudo_response': empty revision"),
    (_opa_row(image="images/none.png"), r"opa.jsonl:1 field 'image': image file not found"),
    ({k: v for k, v in _opa_row().items() if k != "standard_response"}, r"opa.jsonl:1 field 'standard_response'"),
])
def test_opa_schema_errors_name_file_line_and_field(tmp_path, row, match):
    png(tmp_path / "images" / "a.png")
    (tmp_path / "opa.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match=match):
        formats.load_any(tmp_path / "opa.jsonl")


def test_opa_sequences_are_tokenised_sentence_by_sentence_with_aligned_weights(tiny_llava_loader, tmp_path):
    from bench.train.loop import encode_sequence
    from methods.opa_dpo import OpaDpoConfig, response_pieces, sequences

    png(tmp_path / "images" / "a.png")
    (tmp_path / "opa.jsonl").write_text(json.dumps(_opa_row()) + "\n")
    (rec,) = formats.load_opa(tmp_path / "opa.jsonl")
    _, pre = tiny_llava_loader()
    seqs = {s.name: s for s in sequences(OpaDpoConfig(response_bos=False))}
    enc = encode_sequence(pre, rec, seqs["rev"], 2048)
    response = [t for t, lab in zip(enc["input_ids"], enc["labels"]) if lab != -100]
    ids, score_w, error_w = response_pieces(pre, rec, "rev")
    assert response == ids + [pre.tokenizer.eos_token_id] and len(score_w) == len(response)
    n0 = len(pre.response_ids("A dog sits.")) - 1
    n1 = len(pre.response_ids("A cup stands.")) - 1
    assert score_w == [1.0] * n0 + [2.0] * n1 + [1.0] * (len(ids) - n0 - n1) + [1.0]
    assert error_w[:n0 + n1] == [1.0] * n0 + [3.0] * n1
    own_ids, own_w, _ = response_pieces(pre, rec, "own")
    assert pre.tokenizer.decode(own_ids).strip() == "A dog sits. A fork lies on it." and own_w[-1] == 0.0


def test_opa_reference_run_starts_every_response_with_bos_after_the_seeds_dpo_prompt(tiny_llava_loader, tmp_path):
    """Defaults = the seed's DPO stage: prompt ``"<s> {system} USER: <image> \\n{q} ASSISTANT: "`` after the
    tokenizer's BOS (two BOS ids), image tokens in place of ``<image>``; y_gt, y_o, y_r (and the masked-image
    copies) start with ``<s>`` and end with ``</s>``. ``response_bos=False, prompt_format="vicuna_v1"`` gives
    back the vicuna_v1 encoding of the other stages."""
    from bench.models.llava import IGNORE_INDEX
    from bench.train.loop import encode_sequence
    from methods.opa_dpo import OpaDpoConfig, opa_prompt_text, response_pieces, sequences

    png(tmp_path / "images" / "a.png")
    (tmp_path / "opa.jsonl").write_text(json.dumps(_opa_row()) + "\n")
    (rec,) = formats.load_opa(tmp_path / "opa.jsonl")
    _, pre = tiny_llava_loader()
    tok, bos, eos = pre.tokenizer, pre.tokenizer.bos_token_id, pre.tokenizer.eos_token_id
    text = opa_prompt_text(rec.question, pre.system)
    assert text == ("<s> " + pre.system + " USER: <image> \nDescribe the image. ASSISTANT: ")
    before, after = text.split("<image>")
    prompt = ([bos] + tok(before, add_special_tokens=False)["input_ids"] + [pre.image_token_id] * pre.num_image_tokens
              + tok(after, add_special_tokens=False)["input_ids"])
    assert prompt[:2] == [bos, bos]
    cfg = OpaDpoConfig()
    assert cfg.response_bos and cfg.prompt_format == "reference"
    for seq in sequences(cfg):
        enc = encode_sequence(pre, rec, seq, 2048)
        n = enc["prompt_len"]
        assert enc["input_ids"][:n] == prompt, seq.name
        response = enc["input_ids"][n:]
        assert enc["labels"][n:] == response and set(enc["labels"][:n]) == {IGNORE_INDEX}
        assert response[0] == bos and response[-1] == eos and bos not in response[1:], seq.name
    gt = encode_sequence(pre, rec, sequences(cfg)[0], 2048)
    assert gt["input_ids"][gt["prompt_len"]:] == [bos] + pre.response_ids(rec.extra["gt"])
    own = encode_sequence(pre, rec, sequences(cfg)[1], 2048)
    assert own["input_ids"][own["prompt_len"]:] == response_pieces(pre, rec, "own", bos=True)[0] + [eos]

    plain = {s.name: s for s in sequences(OpaDpoConfig(response_bos=False, prompt_format="vicuna_v1"))}
    assert encode_sequence(pre, rec, plain["gt"], 2048) == pre.encode_pair(rec.question, rec.extra["gt"], 2048)
    rev = encode_sequence(pre, rec, plain["rev"], 2048)
    assert rev["input_ids"][:rev["prompt_len"]] == pre.prompt_ids(rec.question)
    assert rev["input_ids"][rev["prompt_len"]] != bos


# -------------------------------------------------------------------------------------- our JSONL, dispatch
def test_every_method_reads_our_jsonl_and_rejects_a_missing_image_naming_the_line(tmp_path):
    png(tmp_path / "img.png")
    good = {"id": "a", "image": "img.png", "question": "q", "chosen": "c", "rejected": "r"}
    (tmp_path / "p.jsonl").write_text(json.dumps(good) + "\n" + json.dumps({**good, "id": "b", "image": "x.png"}) + "\n")
    for name in METHODS.names():
        with pytest.raises(DataError, match=r"p.jsonl:2 field 'image': image file not found"):
            METHODS.get(name)().load_records(tmp_path / "p.jsonl", METHODS.get(name).config_cls())
    (tmp_path / "p.jsonl").write_text(json.dumps(good) + "\n" + json.dumps(good) + "\n")
    with pytest.raises(DataError, match=r"p.jsonl:2 field 'id': duplicate id 'a'"):
        formats.load_any(tmp_path / "p.jsonl")
    (tmp_path / "p.jsonl").write_text(json.dumps({**good, "rejected": "  "}) + "\n")
    with pytest.raises(DataError, match=r"p.jsonl:1 field 'rejected': empty response"):
        formats.load_any(tmp_path / "p.jsonl")


def test_opa_derives_its_fields_for_plain_pairs_and_refuses_half_filled_ones(tmp_path):
    from bench.data.preference import PreferenceRecord

    method = METHODS.get("opa-dpo")()
    (rec,) = method.prepare_records([PreferenceRecord("a", "x.png", "q", "A dog. A cup.", "A dog. A fork.")])
    assert rec.extra["gt"] == rec.extra["revision"] == "A dog. A cup." and rec.extra["rollout"] == "A dog. A fork."
    assert [(s["copied"], s["rewritten"], s["score"]) for s in rec.extra["sentences"]] == [
        ("A dog.", "A dog.", 4), ("A fork.", "A cup.", 2)]
    (yes,) = method.prepare_records([PreferenceRecord("b", "x.png", "q", "Yes", "No")])
    assert yes.extra["sentences"][0]["rewritten"] == "Yes"  # nothing added to the text
    with pytest.raises(DataError, match="sample c.*missing from extra: \\['revision', 'rollout', 'sentences'\\]"):
        method.prepare_records([PreferenceRecord("c", "x.png", "q", "c", "r", extra={"gt": "c"})])
