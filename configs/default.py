r"""Model parsing on the embedded default zoo (the job `python train.py` runs).

Builds (or reuses) the default GM zoo, converts it to TFRecord shards, trains the FEN and the
parsing network jointly on the training GMs of leave-out test set 1, selects on held-out
validation GMs and evaluates on the test GMs.

  python train.py                                            # this config, workdir ./workdir
  python train.py --config configs/default.py:tiny --workdir /tmp/revgm_tiny
  python train.py --config configs/default.py --config.batch_size=32 --config.data.test_set=2

The FEN is lighter than the paper's 17 x 64 (`configs/red116.py`) so that the whole job, zoo
build included, fits in 15 minutes on a 2-core CPU (measured run times: README.md, Training);
the zoo's images are 32 x 32, so the low-frequency radius scales to round(25 * 32 / 64) = 12.
"""

import ml_collections

from revgm_jax.config_utils import parse_arg
from revgm_jax.zoo import presets as zoo_presets


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = parse_arg(arg, preset="default")
  config = ml_collections.ConfigDict()
  config.seed = 1

  # --- data -------------------------------------------------------------------------------
  config.data = ml_collections.ConfigDict()
  config.data.source = "zoo"  # "zoo": build/reuse the embedded zoo; "folder": published layout
  config.data.zoo = zoo_presets.get_preset("default")
  config.data.zoo_dir = ""  # "" -> $REVGM_CACHE (default ~/.cache/revgm_jax)/zoo/<preset>-<hash>
  config.data.image_dir = ""  # folder source: root/<GM_NAME>/*.png|jpg|jpeg|bmp
  config.data.labels_dir = ""  # gm_index.csv + ground-truth .npy tables; "" -> image_dir
  config.data.tfds_dir = ""  # TFRecord shards; "" -> $REVGM_CACHE/tfds
  config.data.shards_per_gm = 0  # 0: TFDS sizes shards (>= 64 MiB); n: n files per GM (many hosts)
  config.data.space = "zoo"  # hyperparameter space: red116 | v1 | zoo
  config.data.test_set = 1  # leave-out test set 1..4
  config.data.test_gms = ""  # comma-separated GM names; overrides test_set
  config.data.num_val_gms = 4  # at least; whole cohorts, and random GMs too (docs/protocol.md)
  config.data.max_train_gms = 0  # > 0: train on that many (nested subsets; scaling study)
  config.data.max_images_per_gm = 0  # 0 = all
  config.data.shuffle_buffer = 8192
  # Independent training streams, dealt evenly to the processes (0: one per process). Fix it to
  # make the global batches, and so the run, independent of the number of processes.
  config.data.input_shards = 0
  config.data.random_crop = False  # crop image_size x image_size instead of resizing
  config.data.mean = 0.6490
  config.data.std = 0.1269
  config.data.shuffle_labels = False  # random-ground-truth baseline: permute GM -> label rows
  config.data.max_image_pixels = 40_000_000  # larger images are refused, checked before decoding
  config.image_size = 32
  config.batch_size = 16  # global, across all devices and hosts
  config.eval_batch_size = 64

  # --- model (docs/model.md) --------------------------------------------------------------
  config.model = ml_collections.ConfigDict()
  config.model.fen_depth = 8
  config.model.fen_width = 32
  config.model.bn_momentum = 0.9  # PyTorch momentum 0.1
  config.model.bn_epsilon = 1e-5
  config.model.parser_widths = (32, 64, 128, 256, 512)
  config.model.fc_width = 512
  config.model.branch_widths = (256, 64)
  config.model.dropout = 0.5
  config.model.share_branch = False  # True: the official code feeds every head from branch 1
  config.model.head_activation = "logits"  # "official": sigmoid outputs fed to CE as logits
  # "mean": the continuous head starts at the training GMs' mean (its bias = the logit of it);
  # "torch": PyTorch's init, as the official code (configs/red116.py).
  config.model.cont_bias_init = "mean"
  config.model.dtype = "float32"  # "bfloat16": mixed precision trunks (FFT stays float32)

  # --- losses (docs/losses.md) ------------------------------------------------------------
  config.loss = ml_collections.ConfigDict()
  config.loss.fen_terms = "mag,spec,rep,sym"  # subset for the paper's ablations
  config.loss.coef_mag = 0.1
  config.loss.coef_spec = 0.05
  config.loss.coef_rep = 0.001
  config.loss.coef_sym = 1.0
  config.loss.rep_clip = 1e4
  config.loss.low_freq_radius = -1  # -1: round(25 * image_size / 64)
  # "bce": chosen over the paper's "mse" and "l1" on the validation GMs of configs/default.py:large
  # (README, generalisation); configs/red116.py keeps "mse".
  config.loss.continuous = "bce"
  config.loss.weighted_ce = True  # False: plain cross-entropy
  config.loss.class_weights_from = "train"  # "all": count over every GM, as the official code
  config.loss.w_cont = 10.0
  config.loss.w_disc = 10.0
  config.loss.w_group = 10.0
  config.loss.w_loss = 10.0

  # --- optimisation and loop ----------------------------------------------------------------
  config.optim = ml_collections.ConfigDict()
  config.optim.lr = 1e-4
  config.optim.b1 = 0.9
  config.optim.b2 = 0.999
  config.optim.eps = 1e-8
  config.optim.weight_decay = 0.0  # PyTorch-style L2 (added to the gradient), 1e-4 in red116

  config.num_epochs = 3
  config.num_train_steps = -1  # > 0 overrides num_epochs
  config.log_every_steps = 50
  config.eval_every_steps = 500  # validation-GM evaluation and checkpoint
  config.checkpoint_every_steps = 500
  config.keep_checkpoints = 3
  # One job over several processes (revgm_jax/runtime/distributed.py): set the first three to launch
  # without a scheduler, or only multihost=True to let JAX find them (Cloud TPU, SLURM, MPI, k8s).
  config.distributed = ml_collections.ConfigDict()
  config.distributed.coordinator_address = ""  # "host:port" of process 0, reachable by all
  config.distributed.num_processes = 0  # processes in the job
  config.distributed.process_id = -1  # this process, 0 .. num_processes - 1
  config.distributed.multihost = False
  config.distributed.local_device_ids = ""  # e.g. "0,1": this process's accelerators; "" = all

  # --- evaluation (docs/protocol.md) ------------------------------------------------------
  config.eval = ml_collections.ConfigDict()
  config.eval.k_images = (1, 2, 5, 10, 20)
  config.eval.max_images_per_gm = 0  # 0 = all test images
  config.eval.figures = True
  # Added by the evaluation (revgm_jax/evaluation/parsing.py):
  config.eval.which = "best"  # checkpoint the report evaluates: best (on val GMs) | latest
  config.eval.retrieval_images_per_gm = 100  # train images per GM in the retrieval bank; 0 = all
  config.eval.aggregate_fingerprints = True  # k-image curve also for the mean of k fingerprints
  # "spectral features + linear heads" fitted beside the deep parser; each head of `revgm parse`
  # takes its answer from either (or their mean) as the validation GMs decide
  # (docs/protocol.md#the-parsers-answer).
  config.eval.spectral = True
  config.eval.random_gt_workdir = ""  # the same run with data.shuffle_labels=True (report row)
  config.eval.num_figure_gms = 4  # test GMs shown in the fingerprint / spectrum figure

  if arg.preset == "tiny":
    config.data.zoo = zoo_presets.get_preset("tiny")
    config.data.num_val_gms = 2
    config.model.fen_depth = 3
    config.model.fen_width = 8
    config.model.parser_widths = (8, 8, 8, 8, 8)
    config.model.fc_width = 32
    config.model.branch_widths = (16, 8)
    config.batch_size = 8
    config.eval_batch_size = 16
    config.num_train_steps = 20
    config.log_every_steps = 5
    config.eval_every_steps = 10
    config.checkpoint_every_steps = 10
    config.eval.k_images = (1, 2, 5)
    config.eval.figures = False
  elif arg.preset == "large":  # the generalisation study (experiments/leave_out.py, scaling.py)
    config.data.zoo = zoo_presets.get_preset("large")
    config.data.num_val_gms = 12
    # 1,500 steps of 16 = 0.7 epoch of the ~340 training GMs x 100 images: what 4 folds and a
    # scaling study afford on a 2-core CPU in an hour (README, generalisation).
    config.num_train_steps = 1500
    config.eval.retrieval_images_per_gm = 20  # the nearest-GM bank: 20 images of each GM
  elif arg.preset != "default":
    raise ValueError(f"unknown preset {arg.preset!r} of configs/default.py; use default, tiny "
                     "or large")
  return config
