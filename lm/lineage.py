"""The data behind an LM run: token run ids, codec_id, hours per source, licence and kind (from the token manifests).

Read from ``<tokens>/manifests/{samples,runs}.parquet`` and ``_SUCCESS`` (written by ``matalu encode``). Token shards
without manifests (copied by hand) still train; their lineage then says ``"manifests": false`` and counts samples
and hours from the shards' own JSON."""

from __future__ import annotations

import json

import storage
from manifests.io import SUCCESS, manifest_uri, read_table


def _hours(rows: list[tuple[str, float]]) -> dict[str, float]:
    out: dict[str, float] = {}
    for k, s in rows:
        out[k or "(none)"] = out.get(k or "(none)", 0.0) + s / 3600.0
    return {k: round(v, 4) for k, v in sorted(out.items())}


def lineage(tokens: str, shards: list[str], codec_id: str) -> dict:
    """A JSON-able summary of the token data of a run (``tokens``: the token root, ``shards``: what is read)."""
    out: dict = {"tokens": tokens, "codec_id": codec_id, "shards": len(shards)}
    m = manifest_uri(tokens, "samples")
    if storage.exists(m):
        t = read_table(m).to_pydict()
        dur = [float(x or 0.0) for x in t.get("duration_s", [])]
        out.update({"manifests": True, "samples": len(dur), "hours": round(sum(dur) / 3600.0, 4),
                    "hours_per_source": _hours(list(zip(t.get("source", []), dur))),
                    "hours_per_license": _hours(list(zip(t.get("license", []), dur))),
                    "hours_per_kind": _hours(list(zip(t.get("kind", []), dur)))})
        ids = sorted({c for c in t.get("codec_id", []) if c})
        if ids and ids != [codec_id]:
            out["codec_ids_in_manifest"] = ids
    else:
        per_src, per_lic, per_kind, n = [], [], [], 0
        for uri in shards:
            for _key, members in storage.iter_shard(uri):
                meta = json.loads(members["json"])
                d = float(meta.get("duration_s") or 0.0)
                per_src.append((meta.get("source", ""), d))
                per_lic.append((meta.get("license", ""), d))
                per_kind.append((meta.get("kind", ""), d))
                n += 1
        out.update({"manifests": False, "samples": n, "hours": round(sum(d for _, d in per_src) / 3600.0, 4),
                    "hours_per_source": _hours(per_src), "hours_per_license": _hours(per_lic),
                    "hours_per_kind": _hours(per_kind)})
    runs = manifest_uri(tokens, "runs")
    if storage.exists(runs):
        out["token_run_ids"] = read_table(runs).column("run_id").to_pylist()
    succ = storage.join(tokens, SUCCESS)
    if storage.exists(succ):
        try:
            out["committed_run_id"] = json.loads(storage.read_text(succ)).get("run_id", "")
        except ValueError:
            out["committed_run_id"] = ""
    return out
