"""matalu (Telugu: "words, talk") — Telugu speech data to a Moshi-style speech-to-speech model."""

__version__ = "0.1.0"
