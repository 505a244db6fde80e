#!/usr/bin/env python3
"""Checks, against a running stack, that a MIDI region is heard: makes a C major arpeggio in
Lua, places it on the timeline, renders those beats offline and measures the WAV's peak.

    python3 scripts/check-midi-render.py [HOLLER]      (default: holler on PATH)

Exits 0 and prints the peak and RMS in dBFS when the render is audible (peak above -40 dBFS),
1 otherwise. Used by scripts/rehearse-fresh-machine, where no system SoundFont exists.
"""

import json
import math
import struct
import subprocess
import sys
import tempfile

HOLLER = sys.argv[1] if len(sys.argv) > 1 else "holler"
AUDIBLE_DBFS = -40.0


def holler(*args: str) -> dict:
    out = subprocess.run([HOLLER, "--json", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def float_wav_samples(path: str) -> list[float]:
    """The samples of a 32-bit float WAV (format 3), all channels interleaved."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise SystemExit(f"{path} is not a WAV file")
    pos, fmt = 12, None
    while pos + 8 <= len(data):
        tag, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = data[pos + 8 : pos + 8 + size]
        if tag == b"fmt ":
            fmt = struct.unpack_from("<HHIIHH", body)
        elif tag == b"data":
            if fmt is None or fmt[0] not in (3, 0xFFFE) or fmt[5] != 32:
                raise SystemExit(f"expected 32-bit float samples, got format {fmt}")
            return list(struct.unpack(f"<{len(body) // 4}f", body))
        pos += 8 + size + (size & 1)
    raise SystemExit(f"{path} has no data chunk")


def main() -> int:
    notes = ", ".join(f"{{pitch = {p}, start = {i * 0.5}, duration = 1}}" for i, p in enumerate([60, 64, 67, 72]))
    song = holler("lua", f"return midi.save(midi.from_notes({{{notes}}}))")["result"]
    region = holler("call", "timeline_add_region", json.dumps({"casHash": song, "positionBeats": 0}))["region"]
    try:
        render = holler("call", "timeline_render", json.dumps({"fromBeats": 0, "toBeats": 4}))
        with tempfile.NamedTemporaryFile(suffix=".wav") as wav:
            subprocess.run([HOLLER, "cas", "get", render["casHash"], "-o", wav.name], check=True)
            samples = float_wav_samples(wav.name)
    finally:
        holler("call", "timeline_remove", json.dumps({"id": region["regionId"]}))
    peak = max((abs(s) for s in samples), default=0.0)
    rms = math.sqrt(sum(s * s for s in samples) / max(len(samples), 1))
    db = lambda x: 20 * math.log10(x) if x > 0 else float("-inf")  # noqa: E731
    verdict = "audible" if db(peak) > AUDIBLE_DBFS else "SILENT"
    print(f"{verdict}: {len(samples) // 2} frames, peak {db(peak):.1f} dBFS, RMS {db(rms):.1f} dBFS")
    return 0 if verdict == "audible" else 1


if __name__ == "__main__":
    sys.exit(main())
