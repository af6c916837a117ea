"""What work leaves alive in the process once its objects are gone (imported by the tests that check it)."""
import gc

from tensorflow.python.framework.func_graph import FuncGraph


def live_graphs() -> int:
    """Traced function graphs still alive after a full garbage collection."""
    gc.collect()
    return sum(isinstance(obj, FuncGraph) for obj in gc.get_objects())
