"""The decisions a run's setup takes before a model exists, shared by the recipe (`training/`)
and the pre-flight (`doctor`, `planning`, `launch`), which must not depend on the recipe:
the DeepSpeed config (`deepspeed.py`), whether Liger kernels run (`kernels.py`), the job's
identity (`job.py`) and the GPU a memory estimate is for (`target.py`)."""
