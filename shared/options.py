"""Per-file conversion options, read from the input blob's metadata and validated against closed sets.

A producer sets them as blob metadata (`az storage blob upload --metadata mp3_bitrate=128k`, the SDK, Storage
Explorer). Every key is optional; an unset one takes the app's setting (MP3_QUALITY) or ffmpeg's own choice.

| key | allowed values | meaning |
|---|---|---|
| `mp3_bitrate` | LAME's MPEG-1 Layer III bitrates 32k ... 320k | constant bitrate (CBR) |
| `mp3_quality` | 0 ... 9 | LAME VBR quality (0 best), instead of a bitrate |
| `mp3_channels` | 1, 2 | mono / stereo |
| `mp3_samplerate` | LAME's sample rates 8000 ... 48000 | output sample rate in Hz |
| `mp3_loudnorm` | true, false | EBU R128 loudness normalisation to -16 LUFS integrated |

Values only select a member of these sets; shared/ffmpeg.py maps members to fixed command-line tokens, so no
metadata text ever reaches a command line. Anything else (an unknown `mp3_*` key, a value outside its set,
both a bitrate and a quality, a bitrate the chosen sample rate cannot carry) is an `OptionProblem` whose reason
names the key and its allowed values: the upload is `rejected`. Metadata keys not starting with `mp3_` are the
producer's own and ignored.

The options used are recorded in canonical text (`canonical()`, e.g. `mp3_bitrate=128k,mp3_channels=1`) on the
ledger row, in the completion event and in the MP3's own metadata (`as_metadata()`).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PREFIX = "mp3_"
BITRATE = "mp3_bitrate"
QUALITY = "mp3_quality"
CHANNELS = "mp3_channels"
SAMPLERATE = "mp3_samplerate"
LOUDNORM = "mp3_loudnorm"
KEYS = (BITRATE, QUALITY, CHANNELS, SAMPLERATE, LOUDNORM)

# LAME's bitrates (kbit/s) per MPEG version: MPEG-1 carries 32-48 kHz, MPEG-2 16-24 kHz, MPEG-2.5 8-12 kHz.
# The offered set is MPEG-1's (32k...320k); a lower sample rate narrows it to what its version can carry.
BITRATES_K = (32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_MPEG2_MAX_K = 160
_MPEG25_MAX_K = 64
SAMPLE_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)
QUALITIES = tuple(range(10))
CHANNEL_COUNTS = (1, 2)
LOUDNESS_TARGET_LUFS = -16

_TRUE, _FALSE = ("true", "1", "yes"), ("false", "0", "no")


@dataclass(frozen=True)
class ConversionOptions:
    """What one conversion uses. Exactly one of `bitrate_k` (CBR) and `quality` (VBR) is set once
    `resolved()` has applied the app's default quality; `channels`/`sample_rate` None = as the input has it
    (ffmpeg downmixes more than two channels to stereo and resamples rates above 48 kHz)."""

    bitrate_k: int | None = None
    quality: int | None = None
    channels: int | None = None
    sample_rate: int | None = None
    loudnorm: bool = False

    def resolved(self, default_quality: int) -> ConversionOptions:
        if self.bitrate_k is None and self.quality is None:
            return ConversionOptions(None, default_quality, self.channels, self.sample_rate, self.loudnorm)
        return self

    def as_metadata(self) -> dict[str, str]:
        """The options as metadata names and values (the MP3's metadata, the event's `options`)."""
        meta: dict[str, str] = {}
        if self.bitrate_k is not None:
            meta[BITRATE] = f"{self.bitrate_k}k"
        if self.quality is not None:
            meta[QUALITY] = str(self.quality)
        if self.channels is not None:
            meta[CHANNELS] = str(self.channels)
        if self.sample_rate is not None:
            meta[SAMPLERATE] = str(self.sample_rate)
        meta[LOUDNORM] = "true" if self.loudnorm else "false"
        return meta

    def canonical(self) -> str:
        """One line, keys in a fixed order: the ledger's `Options` column."""
        return ",".join(f"{k}={v}" for k, v in self.as_metadata().items())


@dataclass(frozen=True)
class OptionProblem:
    """Why the metadata's options cannot be used (the rejected row's reason)."""

    key: str
    reason: str


def allowed_values(key: str) -> str:
    return {
        BITRATE: ", ".join(f"{k}k" for k in BITRATES_K),
        QUALITY: "0 (best) to 9",
        CHANNELS: "1 (mono), 2 (stereo)",
        SAMPLERATE: ", ".join(str(r) for r in SAMPLE_RATES),
        LOUDNORM: "true, false",
    }[key]


def from_metadata(metadata: Mapping[str, str] | None) -> ConversionOptions | OptionProblem:
    """The options a blob's metadata asks for (names are case-insensitive, as Azure Storage treats them)."""
    wanted = {k.lower(): (v or "").strip() for k, v in (metadata or {}).items() if k.lower().startswith(PREFIX)}
    unknown = sorted(set(wanted) - set(KEYS))
    if unknown:
        return OptionProblem(unknown[0], (f"metadata {_shown(unknown[0])} is not an option; the options are "
                                          f"{', '.join(KEYS)}"))
    values: dict[str, int | bool] = {}
    for key, raw in wanted.items():
        value = _parse(key, raw.lower())
        if value is None:
            return OptionProblem(key, f"metadata {key}={_shown(raw)} is not allowed; allowed values: {allowed_values(key)}")
        values[key] = value
    if BITRATE in values and QUALITY in values:
        return OptionProblem(BITRATE, f"metadata sets both {BITRATE} (constant bitrate) and {QUALITY} (variable "
                                      "bitrate); set one of them")
    options = ConversionOptions(bitrate_k=_int(values.get(BITRATE)), quality=_int(values.get(QUALITY)),
                                channels=_int(values.get(CHANNELS)), sample_rate=_int(values.get(SAMPLERATE)),
                                loudnorm=bool(values.get(LOUDNORM, False)))
    if options.bitrate_k is not None and options.sample_rate is not None:
        top = max_bitrate_k(options.sample_rate)
        if options.bitrate_k > top:
            allowed = ", ".join(f"{k}k" for k in BITRATES_K if k <= top)
            return OptionProblem(BITRATE, (f"metadata {BITRATE}={options.bitrate_k}k is not allowed with "
                                           f"{SAMPLERATE}={options.sample_rate}: an MP3 at that rate carries at "
                                           f"most {top}k; allowed values: {allowed}"))
    return options


def max_bitrate_k(sample_rate: int) -> int:
    if sample_rate <= 12000:
        return _MPEG25_MAX_K
    if sample_rate <= 24000:
        return _MPEG2_MAX_K
    return BITRATES_K[-1]


def _parse(key: str, raw: str) -> int | bool | None:
    if key == LOUDNORM:
        return True if raw in _TRUE else False if raw in _FALSE else None
    if key == BITRATE:
        digits = raw[:-1] if raw.endswith("k") else raw
        number = _number(digits)
        return number if number in BITRATES_K else None
    number = _number(raw)
    allowed = {QUALITY: QUALITIES, CHANNELS: CHANNEL_COUNTS, SAMPLERATE: SAMPLE_RATES}[key]
    return number if number in allowed else None


def _number(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else None


def _int(value: int | bool | None) -> int | None:
    return None if value is None or isinstance(value, bool) else int(value)


def _shown(text: str) -> str:
    """A metadata value quoted for a reason: short and printable (it is the producer's text)."""
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return repr(text[:40] + ("..." if len(text) > 40 else ""))


def parse_canonical(text: str | None) -> ConversionOptions | None:
    """The options recorded on a ledger row (`canonical()`), or None when the row has none."""
    if not text:
        return None
    parsed = from_metadata(dict(part.split("=", 1) for part in text.split(",") if "=" in part))
    return parsed if isinstance(parsed, ConversionOptions) else None
