"""One small storage API over local paths and ``s3://`` URIs, plus the WebDataset shard writer/reader.

Imports nothing from the other matalu packages (DESIGN §2)."""

from storage.errors import StorageError
from storage.shards import ShardInfo, ShardWriter, iter_shard, member_key_ok, segment_shards, shard_members
from storage.uri import (
    StorageOptions,
    configure,
    current_options,
    exists,
    is_local,
    is_s3,
    join,
    list_files,
    local_path,
    put_file,
    read_bytes,
    read_text,
    remove,
    remove_empty_dirs,
    sha256_bytes,
    sha256_file,
    write_bytes,
    write_text,
)

__all__ = [
    "StorageError",
    "StorageOptions",
    "configure",
    "current_options",
    "exists",
    "is_local",
    "is_s3",
    "join",
    "list_files",
    "local_path",
    "put_file",
    "read_bytes",
    "remove",
    "remove_empty_dirs",
    "write_bytes",
    "write_text",
    "read_text",
    "sha256_bytes",
    "sha256_file",
    "ShardInfo",
    "ShardWriter",
    "iter_shard",
    "member_key_ok",
    "segment_shards",
    "shard_members",
]
