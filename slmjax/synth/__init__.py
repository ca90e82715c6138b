"""slmjax.synth: text generators (stories, minimal pairs, words) and TTS engines that write spoken
corpora and benchmark sets in the official layouts. Entry point: ``slmjax-synth`` (cli.py)."""

from slmjax.synth.engines import DEFAULT_VOICES, Voice, parse_voice, parse_voices, synthesize
from slmjax.synth.errors import SynthError
from slmjax.synth.stories import Story, story

__all__ = ["DEFAULT_VOICES", "Story", "SynthError", "Voice", "parse_voice", "parse_voices", "story", "synthesize"]
