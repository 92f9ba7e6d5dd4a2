"""Text-to-speech voices for the synthetic source: one interface, three backends (docs/DESIGN.md, synthetic source).

``make_pool(["8*espeak", "4*mms:/models/mms-tts-tel", "command:piper -m te.onnx -f {out}"])`` gives the voice pool
and the backends that speak for it; ``normalize.to_spoken`` prepares text for a voice."""

from pipelines.tts.voices import Backend, TTSError, Voice, VoiceSpec, make_pool, parse_spec

__all__ = ["Backend", "TTSError", "Voice", "VoiceSpec", "make_pool", "parse_spec"]
