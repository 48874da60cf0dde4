"""Process plumbing: joining a multi-process job (`distributed.py`, and `launch_local.py` to
start one on this machine), stopping on a signal (`stop_signal.py`), file and workdir locks
(`file_lock.py`, `workdir_lock.py`), XLA compile options (`compile_options.py`)."""
