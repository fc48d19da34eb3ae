"""TensorFlow checkpoints (tensor bundles) and SavedModel Keras metadata, read without TensorFlow.

tf.keras writes its weights in TensorFlow's own format in two places: `model.save_weights("cp.ckpt")`
(a TF-format weights checkpoint: `cp.ckpt.index`, `cp.ckpt.data-00000-of-00001`, and a `checkpoint`
text file beside them) and `model.save(dir)` (a SavedModel folder, whose weights are the same kind
of checkpoint at `variables/variables`, and whose Keras configuration is `keras_metadata.pb`).
This module reads both with the standard library and NumPy only: no TensorFlow, no generated
protobuf modules. Everything it reads is bounded by the bytes that are there; bad input raises
`InspectError` with one sentence naming the file.

The rules below were read in TensorFlow's source (tensorflow/tensorflow: `core/lib/io/format.{h,cc}`,
`block.cc`, `table.cc`, `core/util/tensor_bundle/tensor_bundle.cc`, `core/protobuf/tensor_bundle.proto`,
`trackable_object_graph.proto`, `core/framework/types.proto`, `tensor_shape.proto`) and in
tf_keras 2.21 (`tf_keras/protobuf/saved_metadata.proto`, `src/engine/functional.py`,
`src/engine/sequential.py`, `src/saving/legacy/saved_model/`), then checked on files written by
TF 2.15 (`sample_models/tf215/`), tf.keras ~2.1 and TF 2.15 (`../shared/realworld/tf-formats/`),
whose every tensor equals what `tf.train.load_checkpoint(prefix).get_tensor(key)` returns.

The index (`PREFIX.index`) is a LevelDB table:

- the last 48 bytes are the footer: two block handles (metaindex, index; each two varint64s,
  offset and size) padded to 40 bytes, then the magic number 0xdb4775248b80fb57 as two
  little-endian fixed32 (low word first);
- each block is followed by a 5-byte trailer: a compression byte (0 none, 1 snappy; TensorFlow's
  BundleWriter always writes 0, snappy blocks are refused) and the masked crc32c of the block and
  that byte;
- a block is a run of entries then a restart array (fixed32 offsets) and its fixed32 count; an
  entry is varint32 `shared`, `non_shared`, `value_length`, the `non_shared` key bytes (the key
  is the previous key's first `shared` bytes plus these) and the value;
- the index block maps a separator key to the handle of each data block; the metaindex block is
  empty and unused.

Values are protobufs. Key "" holds `BundleHeaderProto` {1 num_shards, 2 endianness (0 little,
1 big), 3 VersionDef {1 producer, 2 min_consumer, 3 bad_consumers}}; every other key holds
`BundleEntryProto` {1 dtype, 2 TensorShapeProto {2 dim {1 size, 2 name}, 3 unknown_rank},
3 shard_id, 4 offset, 5 size, 6 crc32c (fixed32), 7 slices}. A tensor's bytes are
`PREFIX.data-{shard:05d}-of-{num_shards:05d}` [offset, offset + size), in the header's byte
order, and `crc32c` is the masked CRC-32C (Castagnoli) of exactly those bytes
(mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8). A string tensor is stored as one varint64
length per element, the masked crc32c of those lengths (each taken as a little-endian uint32,
or uint64 past 2^32), then the bytes of every element; its entry crc32c covers the lengths (as
uint32), the 4 stored checksum bytes and the element bytes. A partitioned variable's entry
lists `slices`, and each slice is stored under a binary key that starts with a zero byte;
those are refused.

How Keras names objects in the checkpoint (TF2 object-based checkpoints):

- Every key of a weights checkpoint is a path through the object graph, stored itself as the
  scalar string tensor `_CHECKPOINTABLE_OBJECT_GRAPH`, a `TrackableObjectGraph`
  {1 nodes: {1 children {1 node_id, 2 local_name}, 2 attributes {1 name, 2 full_name,
  3 checkpoint_key}, 3 slot_variables {1 original_variable_node_id, 2 slot_name,
  3 slot_variable_node_id}}}. Node 0 is the root (the model). A variable is a node with the
  attribute `VARIABLE_VALUE`; its key is `<path>/.ATTRIBUTES/VARIABLE_VALUE` and `full_name` is
  its TF variable name (`bidirectional/forward_lstm/kernel`, `lstm/lstm_cell/kernel`).
- A Sequential or Functional model names its layers twice, in `model.layers` order
  (tf_keras `src/engine/functional.py`, `Functional._layer_checkpoint_dependencies`, used by
  `_trackable_children` and `_lookup_dependency`): `layer-N` for the N-th layer of
  `model.layers`, and `layer_with_weights-M` for the M-th layer of `model.layers` whose `weights`
  list is not empty, both pointing at the same node (the `layer_with_weights` edge comes first).
  A Functional model's `model.layers` includes its InputLayers (`layer-0`, `layer-1` are the two
  inputs of an encoder-decoder); a Sequential's does not (`src/engine/sequential.py`,
  `Sequential.layers` drops the InputLayer at the bottom of the stack), so there `layer-0` is
  the first real layer. `layer-N` is therefore not stable across Keras versions (a tf.keras ~2.1
  Sequential built at `fit` time, the real two-shard file, has a weightless `layer-0`), but
  `layer_with_weights-M` is, since an InputLayer has no weights: match layers by it.
  A nested model is one layer of its parent and names its own layers the same way inside:
  `layer_with_weights-0/layer_with_weights-0/cell/kernel`.
- Inside a layer, children are named by the attribute that holds them: an LSTM/GRU/SimpleRNN
  layer holds its cell as `cell` (and a weightless `state_spec`), the cell holds `kernel`,
  `recurrent_kernel`, `bias` (names given to `add_weight`, in creation order); a Bidirectional
  holds `forward_layer` and `backward_layer` (tf_keras `src/layers/rnn/bidirectional.py` turns
  attribute tracking off while it stores the wrapped `layer`, so only the two copies appear); a
  Dense holds `kernel`, `bias`; an Embedding `embeddings`.
- The optimizer is the root's child `optimizer`. A Keras 2.11+ optimizer keeps its state under
  `optimizer/_variables/N` (`_iterations`, `_learning_rate`, `_momentums`, `_velocities`); a
  legacy optimizer (`optimizer_v2`, tf.keras before 2.11 or `optimizers.legacy`) lists slot
  variables on its node, saved as `<variable path>/.OPTIMIZER_SLOT/optimizer/<slot>/...`.
  TF 2.15 also adds `train_function`/`train_tf_function` and a `root` self-edge at the root.
- In a SavedModel's `variables/variables`, each layer node also has the serialization aliases of
  tf_keras `src/saving/legacy/saved_model/serialized_attributes.py` (`variables`,
  `trainable_variables`, `keras_api`, `__call__`, ...), and a variable's checkpoint key is its
  shortest path, so an LSTM's kernel can be stored as `variables/0/.ATTRIBUTES/VARIABLE_VALUE`
  while its Keras path is still `layer_with_weights-0/cell/kernel`. `ObjectGraph.paths()` walks
  the Keras edges only (those aliases and the optimizer are skipped) and gives each variable its
  first Keras path, so the same function reads both kinds of checkpoint.

How tf_keras's `load_weights` matches a TF-format checkpoint to a model: it does not use the
order of anything in the file; `tf.train.Checkpoint` restores by walking the live model's
object graph and the saved one side by side, edge name by edge name (`layer_with_weights-M`,
`forward_layer`, `cell`, `kernel`, ...). `keras_layer_weights()` gives the same view: each layer
path to its variables by their names relative to the layer, in the graph's child order, which is
creation order and so `layer.weights` order for every LSTM, Dense, Embedding and Bidirectional
(a layer whose non-trainable weights are created before trainable ones, none here, would list
differently: match by name).

`keras_metadata.pb` (tf_keras `src/saving/legacy/saved_model/save.py`,
`generate_keras_metadata`) is a `SavedMetadata` {1 repeated SavedObject nodes}, each
{2 node_id (in the SavedModel's object graph), 3 node_path ("root", "root.layer_with_weights-0",
"root.layer_with_weights-0.cell", "root.keras_api.metrics.0"), 4 identifier
("_tf_keras_sequential", "_tf_keras_network", "_tf_keras_model", "_tf_keras_layer",
"_tf_keras_rnn_layer", "_tf_keras_input_layer", "_tf_keras_metric"), 5 metadata (a JSON
object), 6 VersionDef}; field 1 is reserved. Every Keras layer gets a node. The root node's JSON
holds `class_name` and `config` (the model's `get_config()`), `model_config` ({"class_name",
"config"}: the same dict a legacy HDF5 stores in its `model_config` attribute, here with
`shared_object_id` keys added to layers), `keras_version` ("2.15.0"), `backend` and, when
compiled, `training_config`. A layer node's JSON holds its `class_name`, `config`, `name`,
`trainable`, `dtype`, `batch_input_shape`, `build_input_shape`. These configs are in the legacy
serialization (tf_keras `saving/legacy/serialization.py`): tuples and shapes are written as
{"class_name": "__tuple__" or "TensorShape", "items": [...]} (decoded here to lists), and the
layer entries lack the `module`, `registered_name` and `build_config` keys that
`model.to_json()` gives in Keras 2.13+; otherwise, `shared_object_id` keys aside, `model_config`
equals `to_json()`'s (checked on the four TF 2.15 samples).

Symbolic links: every file this module opens (the index, each data shard, the `checkpoint` state
file, `keras_metadata.pb`, `saved_model.pb`) is resolved first (`inside`) and refused when it leads
out of the folder the user named (the SavedModel folder; a checkpoint's folder, or the folder of the
checkpoint file or prefix named): a folder handed over by someone else must not read the user's other
files through a link (`variables/variables.data-00000-of-00001 -> ~/.ssh/id_rsa`, a linked
`variables/`). A link that stays inside that folder (a shard linked to a copy beside it, the way
dataset tools deduplicate files) is read: it reads nothing the user did not hand over.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from lstm_inspect.base.errors import InspectError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
BUNDLE_VERSION = 1  # kTensorBundleVersion: the newest min_consumer this reader understands
MAX_INDEX_BYTES = 1 << 30
MAX_SMALL_FILE_BYTES = 1 << 20  # a `checkpoint` text file
MAX_METADATA_BYTES = 256 << 20
MAX_SHARDS = 1 << 20
MAX_STRINGS = 1 << 20          # elements of one string tensor (the object graph is one)
KEY_EXPANSION = 16             # prefix-compressed keys may expand to this many times the index size
MAX_GRAPH_DEPTH = 128          # Keras models nest a few levels; a deeper object graph is refused
PATH_EXPANSION = 64            # the walk's paths may total this many times the graph's size

_DATA_NAME = re.compile(r"^(?P<prefix>.+)\.data-(?P<shard>\d{5,})-of-(?P<num>\d{5,})$")
_LAYER_EDGE = re.compile(r"^layer_with_weights-\d+$")
# The edges of a model that are not Keras layer structure: the optimizer, TF 2.15's traced train
# functions and the root's self-edge, the SavedModel signatures, and what a SavedModel attaches to
# every layer node (tf_keras serialized_attributes.py: the CommonEndpoints objects and functions,
# and `keras_api`, under which the LayerAttributes ones such as `layers` and `metrics` sit).
_NOT_LAYER_EDGES = frozenset({
    "optimizer", "root", "train_function", "train_tf_function", "signatures", "keras_api",
    "variables", "trainable_variables", "regularization_losses", "__call__",
    "call_and_return_all_conditional_losses", "_default_save_signature",
})
# Edges inside a layer that lead to another layer (Bidirectional's halves, a Wrapper's layer).
_SUBLAYER_EDGES = frozenset({"forward_layer", "backward_layer", "layer"})


# --------------------------------------------------------------------------- dtypes

@dataclass(frozen=True)
class _DType:
    name: str
    numpy: str | None  # little-endian storage type; None: not a plain numeric array


# tensorflow/core/framework/types.proto, DataType (the checkpoint stores the base type, < 100).
_DTYPES: dict[int, _DType] = {
    1: _DType("float32", "<f4"), 2: _DType("float64", "<f8"), 3: _DType("int32", "<i4"),
    4: _DType("uint8", "u1"), 5: _DType("int16", "<i2"), 6: _DType("int8", "i1"),
    7: _DType("string", None), 8: _DType("complex64", "<c8"), 9: _DType("int64", "<i8"),
    10: _DType("bool", "?"), 11: _DType("qint8", "i1"), 12: _DType("quint8", "u1"),
    13: _DType("qint32", "<i4"), 14: _DType("bfloat16", "<u2"), 15: _DType("qint16", "<i2"),
    16: _DType("quint16", "<u2"), 17: _DType("uint16", "<u2"), 18: _DType("complex128", "<c16"),
    19: _DType("float16", "<f2"), 20: _DType("resource", None), 21: _DType("variant", None),
    22: _DType("uint32", "<u4"), 23: _DType("uint64", "<u8"), 24: _DType("float8_e5m2", None),
    25: _DType("float8_e4m3fn", None), 26: _DType("float8_e4m3fnuz", None),
    27: _DType("float8_e4m3b11fnuz", None), 28: _DType("float8_e5m2fnuz", None),
    29: _DType("int4", None), 30: _DType("uint4", None), 31: _DType("int2", None),
    32: _DType("uint2", None), 33: _DType("float4_e2m1fn", None),
}


def _dtype(code: int) -> _DType:
    return _DTYPES.get(code, _DType(f"DT_{code}", None))


# --------------------------------------------------------------------------- crc32c

_POLY = 0x82F63B78  # CRC-32C (Castagnoli), reflected
_MASK_DELTA = 0xA282EAD8
_U32 = 0xFFFFFFFF
_SMALL = 1 << 16   # below this many bytes a word-at-a-time Python loop is faster
_LANE = 512        # bytes per lane in the vectorised path
_LANES = 8192      # lanes per group: 4 MiB per group


def _byte_tables() -> list[np.ndarray]:
    """T[k][b]: the CRC register after byte b followed by k zero bytes, from register 0."""
    t = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        t = np.where(t & 1, (t >> 1) ^ np.uint32(_POLY), t >> 1).astype(np.uint32)
    tables = [t]
    for _ in range(3):
        p = tables[-1]
        tables.append(((p >> 8) ^ t[p & 0xFF]).astype(np.uint32))
    return tables


_T = _byte_tables()
_T0 = _T[0].tolist()
_W16 = np.arange(1 << 16, dtype=np.uint32)
# One 32-bit word at a time: register ^= word, then register = _LO[low half] ^ _HI[high half].
_LO = (_T[3][_W16 & 0xFF] ^ _T[2][_W16 >> 8]).astype(np.uint32)
_HI = (_T[1][_W16 & 0xFF] ^ _T[0][_W16 >> 8]).astype(np.uint32)
_LO_LIST, _HI_LIST = _LO.tolist(), _HI.tolist()
del _W16


def _reg_python(reg: int, data: np.ndarray) -> int:
    """The register after `data` (uint8 array), from `reg`, word by word in Python."""
    n4 = data.size - data.size % 4
    lo, hi = _LO_LIST, _HI_LIST
    for w in data[:n4].view("<u4").tolist():
        reg ^= w
        reg = lo[reg & 0xFFFF] ^ hi[reg >> 16]
    for b in data[n4:].tolist():
        reg = _T0[(reg ^ b) & 0xFF] ^ (reg >> 8)
    return reg


def _zero_op_columns(nbytes: int) -> tuple[int, ...]:
    """The linear map 'feed nbytes zero bytes' on the register, as the images of its 32 bits."""
    def apply(cols: tuple[int, ...], v: int) -> int:
        out = 0
        j = 0
        while v:
            if v & 1:
                out ^= cols[j]
            v >>= 1
            j += 1
        return out

    one = tuple(_T0[(1 << j) & 0xFF] ^ ((1 << j) >> 8) for j in range(32))  # one zero byte
    result = tuple(1 << j for j in range(32))  # identity
    power = one
    n = nbytes
    while n:
        if n & 1:
            result = tuple(apply(power, c) for c in result)
        n >>= 1
        if n:
            power = tuple(apply(power, c) for c in power)
    return result


@lru_cache(maxsize=64)
def _zero_op(nbytes: int) -> tuple[np.ndarray, tuple[list[int], ...]]:
    """'Feed nbytes zeros' as four 256-entry tables, one per register byte (NumPy and lists)."""
    cols = np.array(_zero_op_columns(nbytes), dtype=np.uint32)
    b = np.arange(256)
    tables = np.zeros((4, 256), dtype=np.uint32)
    for k in range(4):
        for j in range(8):
            tables[k] ^= np.where((b >> j) & 1, cols[8 * k + j], 0).astype(np.uint32)
    return tables, tuple(t.tolist() for t in tables)


def _apply_zero_op_scalar(nbytes: int, reg: int) -> int:
    t = _zero_op(nbytes)[1]
    return t[0][reg & 0xFF] ^ t[1][(reg >> 8) & 0xFF] ^ t[2][(reg >> 16) & 0xFF] ^ t[3][reg >> 24]


def _reg_lanes(group: np.ndarray) -> int:
    """The register after `group` from register 0; len(group) = _LANE * (a power of two).

    The group is cut into lanes of _LANE bytes whose registers are computed side by side (one
    NumPy operation per word advances every lane), then joined pairwise: reg(A + B) =
    Z^len(B)(reg(A)) ^ reg(B), Z^n being the linear map 'feed n zero bytes'.
    """
    lanes = group.size // _LANE
    words = np.ascontiguousarray(group.view("<u4").reshape(lanes, _LANE // 4).T)
    reg = np.zeros(lanes, dtype=np.uint32)
    a = np.empty(lanes, dtype=np.uint32)
    b = np.empty(lanes, dtype=np.uint32)
    for row in words:
        np.bitwise_xor(reg, row, out=reg)
        np.bitwise_and(reg, 0xFFFF, out=a)
        np.right_shift(reg, 16, out=b)
        np.take(_LO, a, out=reg)
        np.take(_HI, b, out=a)
        np.bitwise_xor(reg, a, out=reg)
    length = _LANE
    while reg.size > 1:
        t = _zero_op(length)[0]
        left, right = reg[0::2], reg[1::2]
        reg = (t[0][left & 0xFF] ^ t[1][(left >> 8) & 0xFF] ^ t[2][(left >> 16) & 0xFF]
               ^ t[3][left >> 24] ^ right)
        length *= 2
    return int(reg[0])


def _reg_head(head: np.ndarray, reg: int) -> int:
    """The register after `head` (at least 4 bytes) from `reg`, through the lanes.

    Zero bytes in front of data leave a zero register unchanged, and a start register equals
    XOR-ing it into the first 4 data bytes; so the head is padded in front to a power-of-two
    number of lanes and `reg` folded into its first bytes.
    """
    lanes = 1
    while lanes * _LANE < head.size:
        lanes *= 2
    buf = np.zeros(lanes * _LANE, dtype=np.uint8)
    pad = buf.size - head.size
    buf[pad:] = head
    buf[pad:pad + 4] ^= np.frombuffer(reg.to_bytes(4, "little"), dtype=np.uint8)
    return _reg_lanes(buf)


def crc32c(data: bytes | bytearray | memoryview | np.ndarray, value: int = 0) -> int:
    """CRC-32C (Castagnoli) of `data`, continuing from the CRC `value` (0 to start).

    Pure NumPy; several hundred MB/s on large buffers. `crc32c(b, crc32c(a)) == crc32c(a + b)`.
    """
    if isinstance(data, np.ndarray):
        buf = np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    else:
        buf = np.frombuffer(data, dtype=np.uint8)
    reg = (value ^ _U32) & _U32
    n = buf.size
    if n < _SMALL:
        return _reg_python(reg, buf) ^ _U32
    group = _LANE * _LANES
    head = n % group
    if head and head < 4:
        head += group
    pos = 0
    if head:
        reg = _reg_python(reg, buf[:head]) if head < _SMALL else _reg_head(buf[:head], reg)
        pos = head
    else:
        reg = _reg_head(buf[:group], reg)
        pos = group
    while pos < n:
        reg = _apply_zero_op_scalar(group, reg) ^ _reg_lanes(buf[pos:pos + group])
        pos += group
    return reg ^ _U32


def mask_crc(crc: int) -> int:
    """The masked form TensorFlow and LevelDB store (crc32c.h `Mask`)."""
    return ((((crc >> 15) | (crc << 17)) & _U32) + _MASK_DELTA) & _U32


def unmask_crc(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & _U32
    return ((rot >> 17) | (rot << 15)) & _U32


# --------------------------------------------------------------------------- protobuf wire format

def _varint(buf: bytes, pos: int, end: int, where: str) -> tuple[int, int]:
    """A base-128 varint at pos (at most 10 bytes, value kept to 64 bits) and the position after it."""
    value = 0
    shift = 0
    while True:
        if pos >= end:
            raise InspectError(f"{where}: a number is cut off (truncated varint)")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value & 0xFFFFFFFFFFFFFFFF, pos
        shift += 7
        if shift >= 70:
            raise InspectError(f"{where}: a number is longer than 10 bytes (corrupt varint)")


def _fields(buf: bytes, where: str) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) for each field of a serialized protobuf message."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos, end, where)
        field, wire = key >> 3, key & 7
        if field == 0:
            raise InspectError(f"{where}: is not a valid protobuf message (field number 0)")
        if wire == 0:
            value, pos = _varint(buf, pos, end, where)
            yield field, wire, value
        elif wire == 1 or wire == 5:
            size = 8 if wire == 1 else 4
            if end - pos < size:
                raise InspectError(f"{where}: a fixed-size field is cut off")
            yield field, wire, int.from_bytes(buf[pos:pos + size], "little")
            pos += size
        elif wire == 2:
            length, pos = _varint(buf, pos, end, where)
            if length > end - pos:
                raise InspectError(f"{where}: a field declares {length} bytes but only {end - pos} follow")
            yield field, wire, buf[pos:pos + length]
            pos += length
        else:
            raise InspectError(f"{where}: is not a valid protobuf message (wire type {wire})")


def _int(value: int | bytes, wire: int, bits: int, where: str, what: str) -> int:
    if wire != 0 or not isinstance(value, int):
        raise InspectError(f"{where}: field {what} has the wrong type")
    if value >= 1 << 63:
        value -= 1 << 64
    if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
        raise InspectError(f"{where}: field {what} is out of range ({value})")
    return value


def _bytes(value: int | bytes, wire: int, where: str, what: str) -> bytes:
    if wire != 2 or not isinstance(value, bytes):
        raise InspectError(f"{where}: field {what} has the wrong type")
    return value


def _text(value: int | bytes, wire: int, where: str, what: str) -> str:
    raw = _bytes(value, wire, where, what)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InspectError(f"{where}: field {what} is not valid UTF-8 text") from None


# --------------------------------------------------------------------------- LevelDB table

def _read_block(data: bytes, offset: int, size: int, limit: int, where: str, what: str) -> bytes:
    """The contents of one block after checking its place, trailer and checksum."""
    if offset < 0 or size < 0 or offset + size + BLOCK_TRAILER_SIZE > limit:
        raise InspectError(f"{where}: the {what} lies outside the file (offset {offset}, size {size}); "
                           f"the file is truncated or damaged")
    contents = data[offset:offset + size]
    kind = data[offset + size]
    stored = int.from_bytes(data[offset + size + 1:offset + size + 5], "little")
    if crc32c(data[offset:offset + size + 1]) != unmask_crc(stored):
        raise InspectError(f"{where}: the {what} at offset {offset} fails its checksum; the file is damaged")
    if kind == 1:
        raise InspectError(f"{where}: the {what} is snappy-compressed, which TensorFlow does not write "
                           f"for checkpoints and lstm-inspect does not read")
    if kind != 0:
        raise InspectError(f"{where}: the {what} has an unknown compression type {kind}")
    return contents


def _block_entries(block: bytes, where: str, what: str) -> Iterator[tuple[bytes, bytes]]:
    """(key, value) for each entry of a block, in order (keys are prefix-compressed)."""
    if len(block) < 4:
        raise InspectError(f"{where}: the {what} is too short to hold its restart count")
    restarts = int.from_bytes(block[-4:], "little")
    if restarts > (len(block) - 4) // 4:
        raise InspectError(f"{where}: the {what} declares {restarts} restart points, more than fit in it")
    end = len(block) - 4 * (restarts + 1)
    pos = 0
    key = b""
    while pos < end:
        shared, pos = _varint(block, pos, end, where)
        non_shared, pos = _varint(block, pos, end, where)
        value_length, pos = _varint(block, pos, end, where)
        if shared > len(key) or non_shared + value_length > end - pos:
            raise InspectError(f"{where}: the {what} has an entry that does not fit in it; the file is damaged")
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        yield key, block[pos:pos + value_length]
        pos += value_length


def _table_items(index: Path) -> list[tuple[bytes, bytes]]:
    """Every (key, value) of a LevelDB table file, in key order; each byte of it is read once."""
    try:
        size = index.stat().st_size
    except OSError as e:
        raise InspectError(f"{index}: cannot be read ({e.strerror or e})") from None
    if size > MAX_INDEX_BYTES:
        raise InspectError(f"{index}: is {size} bytes, too large for a checkpoint index")
    if size < FOOTER_SIZE:
        raise InspectError(f"{index}: is {size} bytes, too short to be a checkpoint index (a footer alone is 48)")
    try:
        data = index.read_bytes()
    except OSError as e:
        raise InspectError(f"{index}: cannot be read ({e.strerror or e})") from None
    footer = data[-FOOTER_SIZE:]
    magic = int.from_bytes(footer[40:44], "little") | int.from_bytes(footer[44:48], "little") << 32
    if magic != TABLE_MAGIC:
        raise InspectError(f"{index}: is not a TensorFlow checkpoint index (wrong magic number)")
    pos = 0
    handles = []
    for _ in range(4):
        value, pos = _varint(footer, pos, 40, f"{index} (footer)")
        handles.append(value)
    _, _, index_offset, index_size = handles
    limit = size - FOOTER_SIZE
    index_block = _read_block(data, index_offset, index_size, limit, str(index), "index block")
    items: list[tuple[bytes, bytes]] = []
    next_free = 0
    # Each entry costs a few bytes but rebuilds a whole key: bound the total so work stays linear.
    key_budget = KEY_EXPANSION * size + (1 << 20)
    for _, handle in _block_entries(index_block, str(index), "index block"):
        offset, p = _varint(handle, 0, len(handle), f"{index} (block handle)")
        block_size, _ = _varint(handle, p, len(handle), f"{index} (block handle)")
        # LevelDB writes data blocks one after another; requiring that keeps reading linear.
        if offset < next_free:
            raise InspectError(f"{index}: its data blocks overlap or are out of order; the file is damaged")
        block = _read_block(data, offset, block_size, limit, str(index), "data block")
        next_free = offset + block_size + BLOCK_TRAILER_SIZE
        for key, value in _block_entries(block, str(index), "data block"):
            if items and key <= items[-1][0]:
                raise InspectError(f"{index}: its keys are out of order; the file is damaged")
            key_budget -= len(key)
            if key_budget < 0:
                raise InspectError(f"{index}: its keys expand to far more bytes than the file holds; "
                                   f"the file is damaged")
            items.append((key, value))
    return items


# --------------------------------------------------------------------------- bundle

@dataclass(frozen=True)
class Entry:
    """One tensor of a bundle: where its bytes are and what they hold (no data)."""

    key: str
    dtype: str                  # 'float32', 'bfloat16', 'string', ... or 'DT_<n>' for an unknown code
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None          # the stored masked CRC-32C; None when the field is absent (read as 0)
    sliced: bool = False        # a partitioned variable: its bytes are in slices, which are not read


@dataclass(frozen=True)
class Header:
    num_shards: int
    endianness: str             # 'little' or 'big'
    producer: int
    min_consumer: int


def _parse_header(raw: bytes, where: str) -> Header:
    num_shards, endianness, producer, min_consumer = 0, 0, 0, 0
    bad: list[int] = []
    for field, wire, value in _fields(raw, where):
        if field == 1:
            num_shards = _int(value, wire, 32, where, "num_shards")
        elif field == 2:
            endianness = _int(value, wire, 32, where, "endianness")
        elif field == 3:
            for f, w, v in _fields(_bytes(value, wire, where, "version"), where):
                if f == 1:
                    producer = _int(v, w, 32, where, "version.producer")
                elif f == 2:
                    min_consumer = _int(v, w, 32, where, "version.min_consumer")
                elif f == 3 and w == 0:
                    bad.append(_int(v, w, 32, where, "version.bad_consumers"))
    if endianness not in (0, 1):
        raise InspectError(f"{where}: declares an unknown byte order ({endianness})")
    if min_consumer > BUNDLE_VERSION or BUNDLE_VERSION in bad:
        raise InspectError(f"{where}: was written in a newer checkpoint format (version needs a reader "
                           f"of version {min_consumer} or later), which lstm-inspect does not read")
    if not 0 <= num_shards <= MAX_SHARDS:
        raise InspectError(f"{where}: declares {num_shards} data shards")
    return Header(num_shards, "big" if endianness else "little", producer, min_consumer)


def _parse_shape(raw: bytes, where: str) -> list[int]:
    """The dimensions of a TensorShapeProto (a BundleEntryProto's field 2)."""
    shape: list[int] = []
    for f, w, v in _fields(raw, where):
        if f == 2:
            dim = 0
            for f2, w2, v2 in _fields(_bytes(v, w, where, "shape.dim"), where):
                if f2 == 1:
                    dim = _int(v2, w2, 64, where, "shape.dim.size")
            if dim < 0:
                raise InspectError(f"{where}: has an unknown dimension ({dim}) in its shape")
            shape.append(dim)
        elif f == 3 and w == 0 and v:
            raise InspectError(f"{where}: has a shape of unknown rank")
    return shape


def _parse_entry(key: str, raw: bytes, where: str) -> Entry:
    dtype = shard_id = offset = size = 0
    crc: int | None = None
    shape: list[int] = []
    sliced = False
    for field, wire, value in _fields(raw, where):
        if field == 1:
            dtype = _int(value, wire, 32, where, "dtype")
        elif field == 2:
            shape += _parse_shape(_bytes(value, wire, where, "shape"), where)
        elif field == 3:
            shard_id = _int(value, wire, 32, where, "shard_id")
        elif field == 4:
            offset = _int(value, wire, 64, where, "offset")
        elif field == 5:
            size = _int(value, wire, 64, where, "size")
        elif field == 6:
            if wire != 5:
                raise InspectError(f"{where}: field crc32c has the wrong type")
            crc = int(value)
        elif field == 7:
            sliced = True
    if shard_id < 0 or offset < 0 or size < 0:
        raise InspectError(f"{where}: declares a negative shard, offset or size")
    return Entry(key, _dtype(dtype).name, tuple(shape), shard_id, offset, size, crc, sliced)


class TensorBundle:
    """A TensorFlow checkpoint (`PREFIX.index` + `PREFIX.data-*`): its entries, and each tensor on demand.

    Opening reads and checks the whole index (every block checksum, every entry), and checks
    that every data shard an entry names is there and holds the entry's bytes; `read` reads one
    tensor's bytes and checks their CRC-32C. `root`, the folder the user named (the prefix's folder when not
    given), holds every file opened (`inside`).
    """

    def __init__(self, prefix: Path, root: Path | None = None) -> None:
        self.prefix = Path(prefix)
        self.root = Path(root) if root is not None else self.prefix.parent
        self.index_path = Path(f"{self.prefix}.index")
        if not self.index_path.is_file():
            raise InspectError(f"{self.index_path}: no such file (the index of checkpoint {self.prefix})")
        inside(self.index_path, self.root)
        where = str(self.index_path)
        items = _table_items(self.index_path)
        if not items or items[0][0] != b"":
            raise InspectError(f"{where}: has no bundle header (the entry with the empty key); "
                               f"it is not a TensorFlow tensor bundle")
        self.header = _parse_header(items[0][1], f"{where} (header)")
        self.entries: dict[str, Entry] = {}
        self.slice_parts = 0  # stored slices of partitioned variables (binary keys), not listed
        for raw_key, value in items[1:]:
            if raw_key.startswith(b"\x00"):
                self.slice_parts += 1
                continue
            key = raw_key.decode("utf-8", "backslashreplace")
            self.entries[key] = _parse_entry(key, value, f"{where} (entry {key!r})")
        self._shard_sizes: dict[int, int] = {}
        for entry in self.entries.values():
            if entry.sliced:
                continue
            if entry.shard_id >= self.header.num_shards:
                raise InspectError(f"{where}: tensor {entry.key} is in shard {entry.shard_id} but the "
                                   f"header declares {self.header.num_shards} shard(s)")
            shard_size = self._shard_size(entry.shard_id)
            if entry.offset + entry.size > shard_size:
                raise InspectError(f"{self.shard_path(entry.shard_id)}: tensor {entry.key} declares bytes "
                                   f"{entry.offset}..{entry.offset + entry.size} but the file has {shard_size}; "
                                   f"it is truncated or damaged")

    def shard_path(self, shard_id: int) -> Path:
        return Path(f"{self.prefix}.data-{shard_id:05d}-of-{self.header.num_shards:05d}")

    def _shard_size(self, shard_id: int) -> int:
        if shard_id not in self._shard_sizes:
            path = self.shard_path(shard_id)
            what = f"data shard {shard_id} of checkpoint {self.prefix}"
            inside(path, self.root)
            try:
                st = path.stat()
            except OSError:
                raise InspectError(f"{path}: no such file ({what})") from None
            if not path.is_file():
                raise InspectError(f"{path}: is not a file ({what})")
            self._shard_sizes[shard_id] = st.st_size
        return self._shard_sizes[shard_id]

    def entry(self, key: str) -> Entry:
        try:
            return self.entries[key]
        except KeyError:
            raise InspectError(f"{self.index_path}: has no tensor named {key!r}") from None

    def _raw(self, entry: Entry) -> np.ndarray:
        """The entry's bytes from its shard, after checking they are all there."""
        path = self.shard_path(entry.shard_id)
        buf = np.empty(entry.size, dtype=np.uint8)
        inside(path, self.root)
        try:
            with open(path, "rb") as f:
                f.seek(entry.offset)
                got = f.readinto(memoryview(buf)) if entry.size else 0
        except OSError as e:
            raise InspectError(f"{path}: cannot be read ({e.strerror or e})") from None
        if got != entry.size:
            raise InspectError(f"{path}: tensor {entry.key} is cut off ({got} of {entry.size} bytes); "
                               f"the file is truncated")
        return buf

    def _check_crc(self, entry: Entry, actual: int) -> None:
        if unmask_crc(entry.crc32c or 0) != actual:
            raise InspectError(f"{self.shard_path(entry.shard_id)}: tensor {entry.key} fails its checksum "
                               f"(crc32c); the file is damaged")

    def _readable(self, entry: Entry) -> None:
        if entry.sliced:
            raise InspectError(f"{self.index_path}: tensor {entry.key} is a partitioned variable (stored in "
                               f"slices), which lstm-inspect does not read")

    def read(self, key: str) -> np.ndarray:
        """One tensor as a NumPy array (bfloat16 widened to float32), its size and CRC checked."""
        entry = self.entry(key)
        self._readable(entry)
        kind = next((d for d in _DTYPES.values() if d.name == entry.dtype), None)
        if entry.dtype == "string":
            raise InspectError(f"{self.index_path}: tensor {key} holds strings, not numbers")
        if kind is None or kind.numpy is None:
            raise InspectError(f"{self.index_path}: tensor {key} has dtype {entry.dtype}, which lstm-inspect "
                               f"does not read")
        dt = np.dtype(kind.numpy)
        if self.header.endianness == "big":
            dt = dt.newbyteorder(">")
        count = 1
        for d in entry.shape:
            count *= d
        expected = count * dt.itemsize
        if entry.size != expected:
            raise InspectError(f"{self.index_path}: tensor {key} declares shape {entry.shape} {entry.dtype} "
                               f"({expected} bytes) but its entry says {entry.size} bytes")
        raw = self._raw(entry)
        self._check_crc(entry, crc32c(raw))
        arr = raw.view(dt).reshape(entry.shape)
        if entry.dtype == "bfloat16":
            return (arr.astype(np.uint32) << 16).view(np.float32)
        return arr.astype(dt.newbyteorder("="), copy=False)

    def read_strings(self, key: str) -> list[bytes]:
        """A string tensor's elements, flattened, with both of its checksums verified."""
        entry = self.entry(key)
        self._readable(entry)
        if entry.dtype != "string":
            raise InspectError(f"{self.index_path}: tensor {key} holds {entry.dtype}, not strings")
        count = 1
        for d in entry.shape:
            count *= d
        if count > entry.size:
            raise InspectError(f"{self.index_path}: tensor {key} declares {count} strings in {entry.size} bytes")
        if count > MAX_STRINGS:
            raise InspectError(f"{self.index_path}: tensor {key} holds {count} strings; lstm-inspect reads at "
                               f"most {MAX_STRINGS}")
        raw = self._raw(entry).tobytes()
        where = f"{self.shard_path(entry.shard_id)} (tensor {key})"
        order = "big" if self.header.endianness == "big" else "little"
        lengths = []
        pos = 0
        for _ in range(count):
            n, pos = _varint(raw, pos, len(raw), where)
            lengths.append(n)
        # The checksum covers each length as a uint32 (a uint64 past 2^32), not its varint bytes.
        crc = crc32c(b"".join(n.to_bytes(4 if n <= _U32 else 8, order) for n in lengths))
        if len(raw) - pos < 4:
            raise InspectError(f"{where}: is cut off before its length checksum")
        stored = raw[pos:pos + 4]
        if unmask_crc(int.from_bytes(stored, order)) != crc:
            raise InspectError(f"{where}: its string lengths fail their checksum; the file is damaged")
        pos += 4
        total = sum(lengths)
        if total > len(raw) - pos:
            raise InspectError(f"{where}: its strings declare more bytes than the entry holds")
        self._check_crc(entry, crc32c(raw[pos:pos + total], crc32c(stored, crc)))
        out = []
        for n in lengths:
            out.append(raw[pos:pos + n])
            pos += n
        return out


# --------------------------------------------------------------------------- naming a checkpoint

def _unescape_text_proto(s: str, where: str) -> str:
    """A protobuf text-format string literal's content (C escapes, octal and hex bytes)."""
    out = bytearray()
    i = 0
    simple = {"n": 10, "t": 9, "r": 13, "a": 7, "b": 8, "f": 12, "v": 11, "\\": 92, "'": 39, '"': 34, "?": 63}
    while i < len(s):
        c = s[i]
        if c != "\\":
            out += c.encode("utf-8")
            i += 1
            continue
        if i + 1 >= len(s):
            raise InspectError(f"{where}: has a broken escape in model_checkpoint_path")
        c = s[i + 1]
        if c in simple:
            out.append(simple[c])
            i += 2
        elif c in "01234567":
            m = re.match(r"[0-7]{1,3}", s[i + 1:])
            assert m is not None
            out.append(int(m.group(), 8) & 0xFF)
            i += 1 + len(m.group())
        elif c in "xX" and re.match(r"[0-9a-fA-F]{1,2}", s[i + 2:]):
            m = re.match(r"[0-9a-fA-F]{1,2}", s[i + 2:])
            assert m is not None
            out.append(int(m.group(), 16))
            i += 2 + len(m.group())
        else:
            raise InspectError(f"{where}: has an unknown escape \\{c} in model_checkpoint_path")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise InspectError(f"{where}: model_checkpoint_path is not valid UTF-8") from None


def inside(path: Path, root: Path) -> Path:
    """`path` itself, once resolved (every symbolic link on its way followed) it is inside `root`, the folder the
    user named (itself resolved: naming a link to a folder is naming that folder); else the one-line refusal."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(path)
    if os.path.commonpath([real_root, real]) != real_root:
        raise InspectError(f"{path}: is a symbolic link (or lies in a linked folder) leading outside {root}, the "
                           "folder named; lstm-inspect reads only files inside it (name the linked file's own "
                           "folder to read it)")
    return path


def _read_small(path: Path, limit: int, what: str, root: Path) -> bytes:
    inside(path, root)
    try:
        size = path.stat().st_size
        if size > limit:
            raise InspectError(f"{path}: is {size} bytes, too large for {what}")
        return path.read_bytes()
    except OSError as e:
        raise InspectError(f"{path}: cannot be read ({e.strerror or e})") from None


def _prefix_in_folder(folder: Path) -> Path:
    state = folder / "checkpoint"
    if state.is_file():
        try:
            text = _read_small(state, MAX_SMALL_FILE_BYTES, "a checkpoint state file", folder).decode("utf-8")
        except UnicodeDecodeError:
            raise InspectError(f"{state}: is not a text file (expected `model_checkpoint_path: \"...\"`)") from None
        m = re.search(r'^\s*model_checkpoint_path\s*:\s*"((?:[^"\\\n]|\\.)*)"', text, re.MULTILINE)
        if m is None:
            raise InspectError(f"{state}: has no model_checkpoint_path line")
        named = _unescape_text_proto(m.group(1), str(state))
        if not named:
            raise InspectError(f"{state}: model_checkpoint_path is empty")
        candidate = Path(named) if os.path.isabs(named) else folder / named
        inside = Path(os.path.abspath(folder)).resolve()
        if not Path(os.path.abspath(candidate)).resolve().is_relative_to(inside):
            raise InspectError(f"{state}: model_checkpoint_path {named!r} points outside the folder; "
                               f"pass the checkpoint prefix (PREFIX of PREFIX.index) instead")
        if not Path(f"{candidate}.index").is_file():
            raise InspectError(f"{state}: names checkpoint {named!r}, but {candidate}.index does not exist")
        return candidate
    indexes = sorted(p for p in folder.glob("*.index") if p.is_file())
    if len(indexes) == 1:
        return indexes[0].with_name(indexes[0].name[: -len(".index")])
    if not indexes:
        hint = ""
        if (folder / "variables" / "variables.index").is_file():
            hint = "; it is a SavedModel, whose weights are the checkpoint variables/variables"
        raise InspectError(f"{folder}: holds no TensorFlow checkpoint (no .index file){hint}")
    names = ", ".join(p.name[: -len(".index")] for p in indexes)
    raise InspectError(f"{folder}: holds several checkpoints ({names}) and no `checkpoint` file naming one; "
                       f"pass the one you mean")


def resolve_prefix(path: Path) -> Path:
    """The checkpoint prefix (absolute) for any way a user names a TF checkpoint.

    Accepts the prefix itself (`training/cp.ckpt`, not a file), its `.index` file, any of its
    `.data-NNNNN-of-MMMMM` files, its folder (whose `checkpoint` file's `model_checkpoint_path`,
    relative or absolute but inside the folder, names it; else the folder's only prefix) or that
    `checkpoint` file. A SavedModel's `variables/variables` is found by the caller.
    """
    path = Path(path)
    if path.is_dir():
        return Path(os.path.abspath(_prefix_in_folder(path)))
    name = path.name
    if path.is_file() and name == "checkpoint":
        return Path(os.path.abspath(_prefix_in_folder(path.parent)))
    if Path(f"{path}.index").is_file():
        return Path(os.path.abspath(path))
    if name.endswith(".index") and path.is_file():
        return Path(os.path.abspath(path.with_name(name[: -len(".index")])))
    m = _DATA_NAME.match(name)
    if m and path.is_file():
        prefix = path.with_name(m.group("prefix"))
        if not Path(f"{prefix}.index").is_file():
            raise InspectError(f"{path}: is a checkpoint data shard but its index {prefix.name}.index is missing")
        return Path(os.path.abspath(prefix))
    if not path.exists():
        raise InspectError(f"{path}: no such file, folder or checkpoint prefix ({path.name}.index does not exist)")
    raise InspectError(f"{path}: is not a TensorFlow checkpoint (expected PREFIX, PREFIX.index, "
                       f"PREFIX.data-NNNNN-of-MMMMM or their folder)")


# --------------------------------------------------------------------------- object graph

@dataclass(frozen=True)
class ChildRef:
    node_id: int
    local_name: str


@dataclass(frozen=True)
class SerializedTensor:
    name: str            # 'VARIABLE_VALUE' for a variable
    full_name: str       # the TF variable name, e.g. 'lstm/lstm_cell/kernel'
    checkpoint_key: str  # the bundle key holding it


@dataclass(frozen=True)
class SlotVariable:
    original_variable_node_id: int
    slot_name: str
    slot_variable_node_id: int


@dataclass(frozen=True)
class GraphNode:
    children: tuple[ChildRef, ...]
    attributes: tuple[SerializedTensor, ...]
    slot_variables: tuple[SlotVariable, ...]


@dataclass(frozen=True)
class ObjectGraph:
    """A checkpoint's `TrackableObjectGraph`: node 0 is the saved object (the Keras model)."""

    nodes: tuple[GraphNode, ...]
    source: str = "object graph"  # where it came from, for messages
    path_budget: int = 1 << 26    # the characters all walked paths may total

    def walk(self) -> list[tuple[str, int, str]]:
        """(path, node id, edge name) for each node reached from the root through Keras edges.

        Depth first in the stored child order, each node once, named by the first edge that
        reaches it (so a layer reached by `layer_with_weights-M` and `layer-N` is named by the
        first), skipping the optimizer, TF 2.15's train functions and a SavedModel's
        serialization aliases. Paths are bounded: at most MAX_GRAPH_DEPTH deep, and in total
        PATH_EXPANSION times the graph's size.
        """
        out: list[tuple[str, int, str]] = []
        seen = {0}
        stack: list[tuple[str, int, str, int]] = [("", 0, "", 0)]
        budget = self.path_budget
        while stack:
            path, node_id, edge, depth = stack.pop()
            out.append((path, node_id, edge))
            pending = []
            for child in self.nodes[node_id].children:
                if child.local_name in _NOT_LAYER_EDGES or child.node_id in seen:
                    continue
                if depth >= MAX_GRAPH_DEPTH:
                    raise InspectError(f"{self.source}: nests objects more than {MAX_GRAPH_DEPTH} deep")
                seen.add(child.node_id)
                child_path = f"{path}/{child.local_name}" if path else child.local_name
                budget -= len(child_path)
                if budget < 0:
                    raise InspectError(f"{self.source}: its object paths expand to far more text than it holds")
                pending.append((child_path, child.node_id, child.local_name, depth + 1))
            stack.extend(reversed(pending))
        return out

    def paths(self) -> dict[str, str]:
        """Keras path -> checkpoint key, for every variable reachable from the root.

        {"layer_with_weights-0/cell/kernel": "layer_with_weights-0/cell/kernel/.ATTRIBUTES/VARIABLE_VALUE"}
        in a weights checkpoint; in a SavedModel the key may be "variables/0/.ATTRIBUTES/VARIABLE_VALUE".
        Optimizer state and slot variables are left out.
        """
        out: dict[str, str] = {}
        for path, node_id, _ in self.walk():
            for attr in self.nodes[node_id].attributes:
                if attr.name == "VARIABLE_VALUE":
                    out[path] = attr.checkpoint_key
        return out


def _parse_child(raw: bytes, where: str) -> ChildRef:
    """An ObjectReference: a node's child (node_id, local_name)."""
    node_id, name = 0, ""
    for f2, w2, v2 in _fields(raw, where):
        if f2 == 1:
            node_id = _int(v2, w2, 32, where, "children.node_id")
        elif f2 == 2:
            name = _text(v2, w2, where, "children.local_name")
    return ChildRef(node_id, name)


def _parse_slot(raw: bytes, where: str) -> SlotVariable:
    """A SlotVariableReference (an optimizer's slot of a variable)."""
    original, slot_name, slot_node = 0, "", 0
    for f2, w2, v2 in _fields(raw, where):
        if f2 == 1:
            original = _int(v2, w2, 32, where, "slot_variables.original_variable_node_id")
        elif f2 == 2:
            slot_name = _text(v2, w2, where, "slot_variables.slot_name")
        elif f2 == 3:
            slot_node = _int(v2, w2, 32, where, "slot_variables.slot_variable_node_id")
    return SlotVariable(original, slot_name, slot_node)


def _parse_object_graph(raw: bytes, where: str) -> ObjectGraph:
    nodes: list[GraphNode] = []
    for field, wire, value in _fields(raw, where):
        if field != 1:
            continue
        children: list[ChildRef] = []
        attributes: list[SerializedTensor] = []
        slots: list[SlotVariable] = []
        for f, w, v in _fields(_bytes(value, wire, where, "nodes"), where):
            if f == 1:
                children.append(_parse_child(_bytes(v, w, where, "children"), where))
            elif f == 2:
                texts = {1: "", 2: "", 3: ""}
                for f2, w2, v2 in _fields(_bytes(v, w, where, "attributes"), where):
                    if f2 in texts:
                        texts[f2] = _text(v2, w2, where, "attributes")
                attributes.append(SerializedTensor(texts[1], texts[2], texts[3]))
            elif f == 3:
                slots.append(_parse_slot(_bytes(v, w, where, "slot_variables"), where))
        nodes.append(GraphNode(tuple(children), tuple(attributes), tuple(slots)))
    if not nodes:
        raise InspectError(f"{where}: the object graph has no nodes")
    for node in nodes:
        ids = [c.node_id for c in node.children]
        ids += [i for s in node.slot_variables for i in (s.original_variable_node_id, s.slot_variable_node_id)]
        if any(not 0 <= i < len(nodes) for i in ids):
            raise InspectError(f"{where}: the object graph refers to a node that does not exist")
    return ObjectGraph(tuple(nodes), where, PATH_EXPANSION * len(raw) + (1 << 20))


def object_graph(bundle: TensorBundle) -> ObjectGraph:
    """The bundle's `_CHECKPOINTABLE_OBJECT_GRAPH`, decoded."""
    if OBJECT_GRAPH_KEY not in bundle.entries:
        raise InspectError(f"{bundle.index_path}: has no object graph ({OBJECT_GRAPH_KEY}); it is a name-based "
                           f"(TF1 Saver) checkpoint, whose tensors are named by variable only")
    strings = bundle.read_strings(OBJECT_GRAPH_KEY)
    if len(strings) != 1:
        raise InspectError(f"{bundle.index_path}: {OBJECT_GRAPH_KEY} holds {len(strings)} strings, not one")
    return _parse_object_graph(strings[0], f"{bundle.index_path} ({OBJECT_GRAPH_KEY})")


def keras_layer_weights(graph: ObjectGraph) -> dict[str, list[tuple[str, str]]]:
    """Each Keras layer path -> [(variable name relative to the layer, checkpoint key), ...].

    Layers are the nodes reached by `layer_with_weights-M` (at any depth: a nested model's layers
    too) and the sub-layers `forward_layer`, `backward_layer` (Bidirectional) and `layer` (a
    Wrapper such as TimeDistributed). A Bidirectional lists both halves' variables
    ("forward_layer/cell/kernel", ...) and each half is listed again on its own
    ("layer_with_weights-0/forward_layer": [("cell/kernel", key), ...]). Variables come in the
    graph's child order, which is `layer.weights` order for LSTM, Dense, Embedding and
    Bidirectional; tf_keras itself matches them by name.
    """
    walked = graph.walk()
    layers = [path for path, _, edge in walked if _LAYER_EDGE.match(edge) or edge in _SUBLAYER_EDGES]
    found: dict[str, list[tuple[str, str]]] = {layer: [] for layer in layers}
    budget = graph.path_budget  # the text sliced below, bounded like the walk's paths
    for path, key in graph.paths().items():
        cut = path.find("/")
        while cut >= 0:
            budget -= len(path)
            if budget < 0:
                raise InspectError(f"{graph.source}: its object paths expand to far more text than it holds")
            owner = path[:cut]
            if owner in found:
                found[owner].append((path[cut + 1:], key))
            cut = path.find("/", cut + 1)
    return {layer: weights for layer, weights in found.items() if weights}


# --------------------------------------------------------------------------- keras_metadata.pb

def _decode_keras_json(obj: dict) -> object:
    """tf_keras json_utils's encodings of tuples and shapes, as lists (json_utils._decode_helper)."""
    if obj.get("class_name") in ("__tuple__", "TensorShape") and isinstance(obj.get("items"), list):
        return obj["items"]
    return obj


def _parse_metadata_node(raw: bytes, where: str) -> dict:
    """One SavedObject of keras_metadata.pb (see `read_keras_metadata`), its metadata JSON parsed."""
    node: dict = {"node_id": 0, "node_path": "", "identifier": "", "metadata": {},
                  "version": {"producer": 0, "min_consumer": 0}}
    text = ""
    for f, w, v in _fields(raw, where):
        if f == 2:
            node["node_id"] = _int(v, w, 32, where, "node_id")
        elif f == 3:
            node["node_path"] = _text(v, w, where, "node_path")
        elif f == 4:
            node["identifier"] = _text(v, w, where, "identifier")
        elif f == 5:
            text = _text(v, w, where, "metadata")
        elif f == 6:
            for f2, w2, v2 in _fields(_bytes(v, w, where, "version"), where):
                if f2 == 1:
                    node["version"]["producer"] = _int(v2, w2, 32, where, "version.producer")
                elif f2 == 2:
                    node["version"]["min_consumer"] = _int(v2, w2, 32, where, "version.min_consumer")
    if text:
        try:
            node["metadata"] = json.loads(text, object_hook=_decode_keras_json)
        except (ValueError, RecursionError):
            raise InspectError(f"{where}: the metadata of node {node['node_path'] or node['node_id']} "
                               f"is not valid JSON") from None
    return node


def read_keras_metadata(path: Path) -> list[dict]:
    """The nodes of a SavedModel's `keras_metadata.pb` (the file, or the SavedModel folder).

    Each node is {"node_id": int, "node_path": "root.layer_with_weights-0", "identifier":
    "_tf_keras_rnn_layer", "metadata": <its JSON, parsed>, "version": {"producer", "min_consumer"}}.
    tf_keras writes tuples as {"class_name": "__tuple__", "items": [...]} and shapes as
    {"class_name": "TensorShape", "items": [...]}; both come back as plain lists, so a layer
    config reads like the one `model.to_json()` gives (which has lists there).
    The model's configuration is the "root" node's metadata["model_config"] (see `keras_model_config`).
    """
    path = Path(path)
    file = path / "keras_metadata.pb" if path.is_dir() else path
    if not file.is_file():
        raise InspectError(f"{file}: no such file (a SavedModel written by tf.keras has keras_metadata.pb)")
    raw = _read_small(file, MAX_METADATA_BYTES, "Keras metadata", file.parent)
    where = str(file)
    nodes = [_parse_metadata_node(_bytes(value, wire, where, "nodes"), where)
             for field, wire, value in _fields(raw, where) if field == 1]
    if not nodes:
        raise InspectError(f"{where}: holds no Keras objects (an empty SavedMetadata)")
    return nodes


def read_legacy_keras_metadata(folder: Path) -> list[dict]:
    """The root node of a SavedModel from TF 2.0-2.4, whose `model.save` kept the Keras metadata inside
    `saved_model.pb` (tf_keras `saved_model/load.py`, `_read_legacy_metadata`): `SavedModel` {2 repeated
    MetaGraphDef} → `MetaGraphDef` {7 SavedObjectGraph object_graph_def} → {1 repeated SavedObject nodes}, node 0
    the root → `SavedObject` {4 SavedUserObject user_object} → {1 identifier, 3 metadata (the same JSON as
    keras_metadata.pb's root node)}. [] when the root holds no Keras metadata (`tf.saved_model.save`, which
    writes the identifier and no metadata; or not a Keras object at all)."""
    file = Path(folder) / "saved_model.pb"
    if not file.is_file():
        return []
    raw = _read_small(file, MAX_METADATA_BYTES, "SavedModel", file.parent)
    where = str(file)
    for field, wire, value in _fields(raw, where):
        if field != 2:
            continue
        for f, w, v in _fields(_bytes(value, wire, where, "meta_graphs"), where):
            if f != 7:
                continue
            for f2, w2, v2 in _fields(_bytes(v, w, where, "object_graph_def"), where):
                if f2 != 1:
                    continue  # the first node is the root: only it is read
                identifier, text = "", ""
                for f3, w3, v3 in _fields(_bytes(v2, w2, where, "nodes"), where):
                    if f3 == 4:
                        for f4, w4, v4 in _fields(_bytes(v3, w3, where, "user_object"), where):
                            if f4 == 1:
                                identifier = _text(v4, w4, where, "identifier")
                            elif f4 == 3:
                                text = _text(v4, w4, where, "metadata")
                if not (identifier.startswith("_tf_keras_") and text):
                    return []
                try:
                    meta = json.loads(text, object_hook=_decode_keras_json)
                except (ValueError, RecursionError):
                    raise InspectError(f"{where}: the Keras metadata of its root object is not valid JSON") from None
                return [{"node_id": 0, "node_path": "root", "identifier": identifier, "metadata": meta,
                         "version": {"producer": 0, "min_consumer": 0}}]
        return []  # the first MetaGraphDef holds the object graph
    return []


def keras_model_config(nodes: list[dict], where: str = "keras_metadata.pb") -> tuple[dict, str | None]:
    """The model's {"class_name", "config"} and the Keras version, from the root node's metadata."""
    root = next((n for n in nodes if n["node_path"] == "root"), None)
    meta = root["metadata"] if root is not None else None
    if not isinstance(meta, dict):
        raise InspectError(f"{where}: has no root node with the model's metadata")
    config = meta.get("model_config")
    if not (isinstance(config, dict) and "class_name" in config and "config" in config):
        if "class_name" in meta and "config" in meta:
            config = {"class_name": meta["class_name"], "config": meta["config"]}
        else:
            raise InspectError(f"{where}: the root node holds no model configuration "
                               f"(the model was a subclassed Model without get_config)")
    version = meta.get("keras_version")
    return config, str(version) if version is not None else None
