import os

# Must precede the first TensorFlow import anywhere in the test process.
os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# Progress lines would interleave with pytest's output; tests of the progress module pass quiet=False.
os.environ.setdefault("TFPRUNE_MIA_PROGRESS", "0")
