"""Everything the app knows about ffmpeg: the task's command line, the log lines that mark a bad
input, and turning an error log into a reason a person can act on.

- The command reads and writes fixed local names (`INPUT_FILE`, `OUTPUT_FILE`): no blob name ever
  reaches `/bin/sh`. Input: local files only, MP4-family demuxer only (`PROTOCOLS`, `DEMUXERS`). No stdin, audio only (`-vn -sn -dn`), the first audio stream (`-map 0:a:0` fails
  with "matches no streams" when there is none), libmp3lame VBR quality. Messages go to `LOG_FILE`.
- Per-file options (shared/options.py) become fixed tokens from the tables below - a bitrate, quality, channel
  count or rate outside LAME's closed sets raises instead of reaching the line, so no metadata text ever does.
  Loudness normalisation is ffmpeg's single-pass `loudnorm` (EBU R128) to -16 LUFS integrated, true peak
  -1.5 dBTP; it works at 192 kHz, and without `mp3_samplerate` ffmpeg hands the encoder its nearest rate, 48 kHz.
- What ffmpeg does by itself is kept where it is right for an MP3: more than two channels are
  downmixed to stereo (libmp3lame takes mono or stereo; the downmix is normalised, no clipping),
  mono stays mono, rates above 48 kHz are resampled to 48 kHz, low rates (8 kHz) are kept.
- Two inputs ffmpeg converts "successfully" are failures here, so no partial or silent MP3 is
  uploaded as a success: an audio track with no packets (`-abort_on empty_output_stream`), and a
  truncated file, where ffmpeg stops at the cut and exits 0 after logging the MP4 demuxer's
  "partial file" (Matroska: "File ended prematurely"); the command fails when the log says so.
"""
from __future__ import annotations

import re

from .log import scrub
from .options import BITRATES_K, CHANNEL_COUNTS, LOUDNESS_TARGET_LUFS, QUALITIES, SAMPLE_RATES, ConversionOptions

INPUT_FILE = "input.mp4"
OUTPUT_FILE = "output.mp3"
LOG_FILE = "ffmpeg.log"
# ffmpeg's error lines for an input that ends before the data its index promises (MP4/MOV demuxer,
# Matroska demuxer); ffmpeg logs them and exits 0 with the audio up to the cut.
TRUNCATION_MARKERS = ("partial file", "File ended prematurely")
_MAX_TEXT = 1024             # reasons kept short: a ledger row must stay readable
# ffmpeg picks its demuxer from the content, not the name: without these an upload named .mp4 could reach a
# playlist or manifest demuxer (HLS, DASH, concat) that opens other files or URLs from the node. Only local
# files, and only the MP4-family demuxer (ffmpeg's "mov,mp4,m4a,3gp,3g2,mj2"; its name is that whole list).
PROTOCOLS = "file"
DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2"


# Every option value the command can carry, as its fixed token (shared/options.py holds the closed sets).
_QUALITY_TOKENS = {q: f"-q:a {q}" for q in QUALITIES}
_BITRATE_TOKENS = {k: f"-b:a {k}k" for k in BITRATES_K}
_CHANNEL_TOKENS = {c: f"-ac {c}" for c in CHANNEL_COUNTS}
_RATE_TOKENS = {r: f"-ar {r}" for r in SAMPLE_RATES}
_LOUDNORM_TOKEN = f"-af loudnorm=I={LOUDNESS_TARGET_LUFS}:TP=-1.5:LRA=11"


def _token(table: dict[int, str], value: object, what: str) -> str:
    if type(value) is not int or value not in table:  # noqa: E721 - bool is not a quality
        raise ValueError(f"{what} {value!r} is not one of {sorted(table)}")
    return table[value]


def encoder_tokens(mp3_quality: int, options: ConversionOptions | None = None) -> str:
    """The encoder part of the command: `-q:a N` (VBR) or `-b:a Nk` (CBR), then channels, rate, loudness."""
    options = (options or ConversionOptions()).resolved(mp3_quality)
    tokens = [_token(_BITRATE_TOKENS, options.bitrate_k, "mp3 bitrate (kbit/s)") if options.bitrate_k is not None
              else _token(_QUALITY_TOKENS, options.quality, "mp3_quality")]
    if options.channels is not None:
        tokens.append(_token(_CHANNEL_TOKENS, options.channels, "channel count"))
    if options.sample_rate is not None:
        tokens.append(_token(_RATE_TOKENS, options.sample_rate, "sample rate"))
    if options.loudnorm is True:
        tokens.append(_LOUDNORM_TOKEN)
    return " ".join(tokens)


def command_line(mp3_quality: int, options: ConversionOptions | None = None) -> str:
    """The task's command: constant text but for tokens from fixed tables; the shell only provides the log
    redirection and the truncation check (grep of ffmpeg's own log; a match fails the task, exit status 1).
    `mp3_quality` is the app's default (MP3_QUALITY), used when the options name no bitrate or quality.

    PATH first tries the node-shared bin directory where the pool's start task installs a pinned
    static ffmpeg (when FFMPEG_BINARY_URL is set), then the system's (apt, or the emulator's)."""
    if type(mp3_quality) is not int or not 0 <= mp3_quality <= 9:  # noqa: E721
        raise ValueError("mp3_quality must be an integer 0..9")
    ffmpeg = (
        f"ffmpeg -nostdin -hide_banner -loglevel error -abort_on empty_output_stream -y "
        f"-protocol_whitelist {PROTOCOLS} -format_whitelist {DEMUXERS} -i {INPUT_FILE} "
        f"-map 0:a:0 -vn -sn -dn -c:a libmp3lame {encoder_tokens(mp3_quality, options)} -f mp3 {OUTPUT_FILE}"
    )
    truncated = " ".join(f'-e "{marker}"' for marker in TRUNCATION_MARKERS)
    return (f"/bin/sh -c 'PATH=\"$AZ_BATCH_NODE_SHARED_DIR/bin:$PATH\"; {ffmpeg} 2> {LOG_FILE} "
            f"&& ! grep -q {truncated} {LOG_FILE}'")


# ffmpeg wraps its real complaint in generic follow-ups ("Error opening output files: Invalid argument",
# "Conversion failed!"); those say nothing a person can act on, so they are skipped.
_GENERIC_FFMPEG = re.compile(
    r"^(Error opening (input|output) files?\b|Error parsing options\b|Conversion failed|To ignore this\b|"
    r"Failed to set value\b|Exiting normally\b)", re.IGNORECASE)
_FFMPEG_CONTEXT = re.compile(r"^(\[[^\]]*@ ?0x[0-9a-f]+\]\s*)+")  # "[in#0 @ 0x55d1...] ", also nested ones
# ffmpeg's wording for the common bad inputs is cryptic to a person browsing the ledger; say what it
# means first and keep ffmpeg's own words after it. In priority order, searched over the whole log: a
# cause can follow unrelated noise (a truncated file's video errors come before its "partial file").
_UNREADABLE = "the input is not a readable MP4 (corrupt or truncated upload)"
_PLAIN_CAUSES = (
    (re.compile(r"matches no streams", re.IGNORECASE), "the input has no audio stream"),
    (re.compile(r"Format not on whitelist", re.IGNORECASE),
     "the input is not an MP4-family file (another container format, renamed .mp4)"),
    (re.compile(r"moov atom not found", re.IGNORECASE), _UNREADABLE),
    (re.compile("|".join(re.escape(m) for m in TRUNCATION_MARKERS), re.IGNORECASE),
     "the input is truncated: it ends before the audio its index lists (incomplete upload or copy)"),
    (re.compile(r"no decoder found|Decoder \(codec [^)]*\) not found", re.IGNORECASE),
     "the input's audio is in a codec ffmpeg cannot decode (unknown or unsupported audio format)"),
    (re.compile(r"Invalid data found when processing input", re.IGNORECASE), _UNREADABLE),
    (re.compile(r"Empty output stream", re.IGNORECASE), "the input's audio track holds no audio (no packets)"),
)


def reason(text: str) -> str | None:
    """The first (root-cause) lines of an ffmpeg error log, without context prefixes and generic wrap-ups.

    With `-loglevel error` the log holds only errors, and ffmpeg reports the cause first ("moov atom not
    found", "Stream map '' matches no streams.") before the generic consequences."""
    lines = [line for line in (_FFMPEG_CONTEXT.sub("", raw.strip()) for raw in text.splitlines()) if line]
    meaningful: list[str] = []
    for line in lines:
        if _GENERIC_FFMPEG.match(line) or line in meaningful:
            continue
        meaningful.append(line)
        if len(meaningful) == 2:
            break
    if not lines:
        return None
    reason = " / ".join(meaningful) or lines[0]
    for pattern, plain in _PLAIN_CAUSES:
        cause_line = next((line for line in lines if pattern.search(line)), None)
        if cause_line is not None:
            excerpt = reason if pattern.search(reason) else cause_line
            return scrub(f"{plain} (ffmpeg: {excerpt})")[:_MAX_TEXT]
    return scrub(reason)[:_MAX_TEXT]
