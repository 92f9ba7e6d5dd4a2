"""Codecs (docs/DESIGN.md §8): the Codec protocol, our own streamable RVQ codec (model, losses, train, eval), adapters
for bring-your-own codecs (TorchScript files, ``module:factory``) and TorchScript export.

Imports only ``storage`` from the other matalu packages (docs/DESIGN.md §2)."""

from codec.base import Codec, StreamingCodec, check_codec, codec_id_from_state_dict, num_frames

__all__ = ["Codec", "StreamingCodec", "check_codec", "codec_id_from_state_dict", "num_frames"]
