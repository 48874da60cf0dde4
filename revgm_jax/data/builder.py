"""TFRecord shards of a published-layout GM folder, built once per content (TFDS builder).

Input: `IMAGE_DIR/<GM_NAME>/*.png|jpg|jpeg|bmp` plus a label directory (the ground-truth tables
of a space and its `gm_index.csv`, see `labels.load_ground_truth`). The published RED116 images
and our zoo (`ZOO_OUT/gms/`, labels in `ZOO_OUT/`) have this layout.

Split design: **one TFDS split per GM** (named `gm_<row>`; examples in sorted file order). Every
experiment needs a different union of GMs — train / val / test of leave-out set 1-4, an explicit
test list, seeded validation GMs — so the union is composed at read time from per-GM file
instructions (`PreparedData.file_slices`) instead of being frozen into the build; nothing is
rebuilt to change the split, and `max_images_per_gm` is a per-split slice (`gm_3[:50]`). Each
shard file then holds one GM, which also makes host sharding by file keep whole GMs together.

Caching: the builder config's name carries a fingerprint of the input — every image file's
relative path, size and mtime, the bytes of the index and ground-truth tables, the space and the
shard setting. Unchanged input finds its finished build and does no work; changed input gets a
new name, is rebuilt, and older builds of the same image folder are deleted.

Real images (detection, attribution; docs/tasks.md#data): with `real_dir`, the images of that
folder (the zoo's `ZOO_OUT/real/`, or `IMAGE_DIR/real/` of a published-layout folder) become one
more class named `real`, split `real`, `gm_row` REAL_ROW, all-zero hyperparameter labels.

Features per example (docs/labels.md#data-layout): `image` (lossless PNG of the RGB image at
its own size), `gm_name`, `gm_row` (row in the ground truth), `net` [15] float32, `loss` [L]
int32, `loss_group` [G] int32, `id` (index of the image in the whole build), `file` (`GM/name`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import io
import os
import shutil

from absl import logging
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds
from tqdm import tqdm

from revgm_jax import config_utils, labels
from revgm_jax.runtime import file_lock
from revgm_jax.data import DataError, images

NAME = "revgm_images"
REAL, REAL_ROW = labels.REAL, labels.REAL_ROW
_MAX_THREADS = 16


@dataclasses.dataclass(frozen=True)
class GMFolder:
  name: str
  row: int
  files: tuple[str, ...]  # image file names inside the folder, sorted
  path: str = ""  # the folder; "" -> IMAGE_DIR/name


def split_name(row: int) -> str:
  return REAL if row == REAL_ROW else f"gm_{row}"


def _folder(image_dir: str, gm: GMFolder) -> str:
  return gm.path or os.path.join(image_dir, gm.name)


def _image_files(folder: str, what: str) -> tuple[str, ...]:
  files = tuple(sorted(f for f in os.listdir(folder)
                       if images.is_image_file(f) and not f.startswith(".")))
  if not files:
    raise DataError(f"{what} {folder} is empty: no {'/'.join(images.IMAGE_EXTENSIONS)} files")
  return files


def scan_image_dir(image_dir: str, gt: labels.GroundTruth,
                   real_dir: str | None = None) -> list[GMFolder]:
  """Lists the GM folders of `image_dir` and their image files, checking them against `gt`;
  with `real_dir`, the real-image folder last. A `real/` folder of `image_dir` is never a GM."""
  if not os.path.isdir(image_dir):
    raise DataError(f"image directory {image_dir} does not exist")
  names = sorted(e.name for e in os.scandir(image_dir)
                 if e.is_dir() and not e.name.startswith(".") and e.name != REAL)
  if not names:
    raise DataError(f"image directory {image_dir} holds no GM folders; expected "
                    f"{image_dir}/<GM_NAME>/*.png|jpg|jpeg|bmp")
  known = set(gt.names)
  unknown = [n for n in names if n not in known]
  if unknown:
    raise DataError(f"GM folder(s) {', '.join(os.path.join(image_dir, n) for n in unknown)} "
                    f"not in the GM index ({labels.INDEX_FILE} of the labels, {len(known)} GMs, "
                    f"e.g. {', '.join(gt.names[:3])}); rename or remove the folder, or add the GM "
                    "to the index and tables")
  folders = [GMFolder(name, gt.row(name), _image_files(os.path.join(image_dir, name),
                                                       "GM folder")) for name in names]
  if real_dir is not None:
    if not os.path.isdir(real_dir):
      raise DataError(f"no real images: folder {real_dir} does not exist (detection and "
                      f"attribution need real images, IMAGE_DIR/{REAL}/ or the zoo's {REAL}/)")
    real_dir = os.path.abspath(real_dir)
    folders.append(GMFolder(REAL, REAL_ROW, _image_files(real_dir, "real-image folder"),
                            real_dir))
  return folders


def fingerprint(image_dir: str, labels_dir: str, space: labels.Space,
                folders: list[GMFolder], shards_per_gm: int) -> str:
  """Hash of everything a build depends on (file stats stand in for image contents)."""
  h = hashlib.sha256(f"{RevgmImages.VERSION}|{space.name}|{shards_per_gm}".encode())
  for gm in folders:
    h.update(f"|{gm.name}".encode())
    for f in gm.files:
      st = os.stat(os.path.join(_folder(image_dir, gm), f))
      h.update(f"|{f}:{st.st_size}:{st.st_mtime_ns}".encode())
  files = labels.LABEL_FILES[space.name]
  for path in (labels.index_path(labels_dir, space.name),
               *(os.path.join(labels_dir, files[k]) for k in ("net", "loss", "group"))):
    with open(path, "rb") as fh:
      h.update(hashlib.sha256(fh.read()).digest())
  return h.hexdigest()


@dataclasses.dataclass(eq=False)
class FolderConfig(tfds.core.BuilderConfig):
  """One build: an image folder, its labels and the scan that fingerprinted them."""
  image_dir: str = ""
  labels_dir: str = ""
  space: str = "red116"
  folders: tuple[GMFolder, ...] = dataclasses.field(default=(), repr=False)  # every file name


def _encode(path: str) -> tuple[bytes, tuple[int, int], str | None]:
  """Decodes any accepted image to RGB and re-encodes it as PNG (lossless)."""
  array, converted_from = images.read_image(path)  # [H, W, 3] uint8
  buf = io.BytesIO()
  Image.fromarray(array).save(buf, format="PNG")
  return buf.getvalue(), array.shape[:2], converted_from


class RevgmImages(tfds.core.GeneratorBasedBuilder):
  """GM images and their hyperparameter labels, one split per GM (see module docstring)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Per-GM splits, PNG images, the features listed above."}
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point manual_dir at a folder IMAGE_DIR/<GM_NAME>/*.png|jpg|jpeg|bmp (the published RED116 "
      "images or a zoo's gms/ folder); use revgm_jax.data.builder.prepare().")
  # TFDS 4.9.10 looks for a checksums file beside the class through `importlib_resources`,
  # which it does not install on Python >= 3.9; a manual-dir builder has nothing to checksum.
  code_path = None

  def __init__(self, *, progress: tqdm | None = None, **kwargs):
    super().__init__(**kwargs)
    self._progress = progress

  def _info(self) -> tfds.core.DatasetInfo:
    space = labels.get_space(self.builder_config.space)
    return self.dataset_info_from_configs(
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
            "gm_name": tfds.features.Text(),
            "gm_row": np.int32,
            "net": tfds.features.Tensor(shape=(labels.NUM_NET,), dtype=np.float32),
            "loss": tfds.features.Tensor(shape=(space.num_loss_types,), dtype=np.int32),
            "loss_group": tfds.features.Tensor(shape=(space.num_groups,), dtype=np.int32),
            "id": np.int32,
            "file": tfds.features.Text(),
        }),
        # Per GM: image count and the smallest height/width with the file that has it, so a
        # reader can check crop sizes without decoding anything.
        metadata=tfds.core.MetadataDict(),
        disable_shuffling=True,  # sorted file order: `gm_3[:50]` is the first 50 files
    )

  def _split_generators(self, dl_manager):
    cfg = self.builder_config
    gt = labels.load_ground_truth(cfg.labels_dir, cfg.space)
    first_id = np.cumsum([0] + [len(gm.files) for gm in cfg.folders])
    return {split_name(gm.row): self._generate_examples(gm, gt, int(first_id[i]))
            for i, gm in enumerate(cfg.folders)}

  def _generate_examples(self, gm: GMFolder, gt: labels.GroundTruth, first_id: int):
    folder = _folder(self.builder_config.image_dir, gm)
    paths = [os.path.join(folder, f) for f in gm.files]
    converted, min_h, min_w = {}, (np.inf, ""), (np.inf, "")
    with concurrent.futures.ThreadPoolExecutor(min(_MAX_THREADS, os.cpu_count() or 1)) as pool:
      for k, (png, (h, w), mode) in enumerate(pool.map(_encode, paths)):
        if mode is not None:
          converted.setdefault(mode, []).append(gm.files[k])
        min_h, min_w = min(min_h, (h, gm.files[k])), min(min_w, (w, gm.files[k]))
        row = max(gm.row, 0)  # real images: the labels of row 0, zeroed below
        yield gm.files[k], {
            "image": png, "gm_name": gm.name, "gm_row": gm.row,
            **{key: getattr(gt, key)[row] * (gm.row != REAL_ROW)
               for key in labels.LABEL_KEYS},
            "id": first_id + k, "file": f"{gm.name}/{gm.files[k]}"}
        if self._progress is not None:
          self._progress.update(1)
    if converted:  # once per GM folder
      logging.info("GM folder %s: converted %s to RGB",
                   folder, "; ".join(f"{len(f)} image(s) from mode {m} (e.g. {f[0]})"
                                     for m, f in sorted(converted.items())))
    self.info.metadata[gm.name] = dict(
        row=gm.row, num_images=len(paths), min_height=int(min_h[0]), min_height_file=min_h[1],
        min_width=int(min_w[0]), min_width_file=min_w[1])


@dataclasses.dataclass(frozen=True, order=True)
class FileSlice:
  """Examples [skip, skip + take) of one shard file (a unit of host sharding)."""
  filename: str
  skip: int
  take: int


@dataclasses.dataclass
class PreparedData:
  """A finished build: what the input pipeline reads."""
  builder: RevgmImages
  gt: labels.GroundTruth
  image_dir: str

  @property
  def gm_info(self) -> dict[str, dict]:
    """GM name -> {row, num_images, min_height(_file), min_width(_file)} of the built GMs."""
    return dict(self.builder.info.metadata)

  def check_gms(self, gm_names, what: str):
    missing = [n for n in gm_names if n not in self.gm_info]
    if missing:
      raise DataError(f"{what} GM(s) {', '.join(missing)} have no folder in {self.image_dir}")

  def image_range(self, name: str, max_per_gm: int = 0,
                  part: tuple[float, float] = (0.0, 1.0)) -> tuple[int, int]:
    """[start, stop) of the images of GM (or class) `name` read: the fraction `part` of its
    files in sorted order, then at most `max_per_gm` (0: no cap) of them."""
    n = self.gm_info[name]["num_images"]
    start, stop = round(part[0] * n), round(part[1] * n)
    return start, (min(stop, start + max_per_gm) if max_per_gm > 0 else stop)

  def num_images(self, gm_names, max_per_gm: int = 0,
                 part: tuple[float, float] = (0.0, 1.0)) -> int:
    return int(sum(b - a for a, b in (self.image_range(n, max_per_gm, part) for n in gm_names)))

  def file_slices(self, gm_names, max_per_gm: int = 0,
                  part: tuple[float, float] = (0.0, 1.0)) -> list[FileSlice]:
    """Shard-file slices holding the images `image_range` gives of each GM."""
    self.check_gms(gm_names, "requested")
    out, info = [], self.gm_info
    for name in gm_names:
      start, stop = self.image_range(name, max_per_gm, part)
      if stop <= start:
        continue
      whole = (start, stop) == (0, info[name]["num_images"])  # TFDS: no slice past the end
      row = REAL_ROW if name == REAL else self.gt.row(name)
      spec = split_name(row) + ("" if whole else f"[{start}:{stop}]")
      for fi in self.builder.info.splits[spec].file_instructions:
        if fi.take > 0:
          out.append(FileSlice(os.fspath(fi.filename), fi.skip, fi.take))
    return out

  def check_min_size(self, gm_names, size: int):
    """Raises DataError naming a file if some image of `gm_names` is smaller than size x size."""
    for name in gm_names:
      info = self.gm_info[name]
      for dim in ("height", "width"):
        if info[f"min_{dim}"] < size:
          raise DataError(
              f"image {os.path.join(self.image_dir, name, info[f'min_{dim}_file'])} has "
              f"{dim} {info[f'min_{dim}']}, smaller than the random crop of {size} x {size} "
              "(config.image_size); lower config.image_size or set config.data.random_crop=False")


def default_data_dir() -> str:
  return os.path.join(config_utils.cache_root(), "tfds")


def prepare(image_dir: str, labels_dir: str, space: str, data_dir: str = "",
            shards_per_gm: int = 0, real_dir: str | None = None) -> PreparedData:
  """Builds (or finds) the TFRecord shards of `image_dir` and returns the handle to read them.

  real_dir: a folder of real images to add as the class `real` (module docstring).
  labels_dir: "" -> image_dir. data_dir: "" -> $REVGM_CACHE/tfds. shards_per_gm: 0 lets TFDS
  size the shards (>= 64 MiB each); n > 0 writes min(n, images of the smallest GM) per GM.
  """
  image_dir = os.path.abspath(image_dir)
  labels_dir = os.path.abspath(labels_dir or image_dir)
  data_dir = os.path.abspath(data_dir or default_data_dir())
  space_obj = labels.get_space(space)
  gt = labels.load_ground_truth(labels_dir, space_obj)
  folders = scan_image_dir(image_dir, gt, real_dir)
  num_shards = min([shards_per_gm] + [len(gm.files) for gm in folders]) if shards_per_gm else None
  digest = fingerprint(image_dir, labels_dir, space_obj, folders, shards_per_gm)
  # With and without real images are two builds that do not replace each other.
  source = image_dir if real_dir is None else f"{image_dir}|{os.path.abspath(real_dir)}"
  prefix = f"{space}-{hashlib.sha256(source.encode()).hexdigest()[:8]}-"
  config = FolderConfig(name=prefix + digest[:16], description=f"{image_dir} ({space})",
                        image_dir=image_dir, labels_dir=labels_dir, space=space,
                        folders=tuple(folders))
  total = sum(len(gm.files) for gm in folders)
  lock = os.path.join(data_dir, ".locks", config.name)  # not among the builds
  with file_lock.waiting(lock, f"TFRecords of {image_dir}: another process is writing them; "
                         "waiting for it"), \
       tqdm(total=total, unit="img", desc=f"TFRecords of {image_dir}", leave=False,
            disable=None) as progress:
    builder = RevgmImages(data_dir=data_dir, config=config, progress=progress)
    if not builder.is_prepared():
      logging.info("Building %d images of %d GMs from %s into %s", total, len(folders),
                   image_dir, builder.data_dir)
      tfds.disable_progress_bar()  # one bar over all GMs (above) instead of one per split
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
          manual_dir=image_dir, num_shards=num_shards))
      _remove_stale_builds(os.path.join(data_dir, NAME), prefix, config.name)
  return PreparedData(builder=builder, gt=gt, image_dir=image_dir)


def _remove_stale_builds(root: str, prefix: str, keep: str):
  """Deletes earlier builds of the same image folder (their input has changed since)."""
  for entry in os.scandir(root):
    if entry.is_dir() and entry.name.startswith(prefix) and entry.name != keep:
      logging.info("Removing outdated build %s", entry.path)
      shutil.rmtree(entry.path, ignore_errors=True)
