"""emolens beyond one process (the ``[distributed]`` extra): batch inference on Ray Data (:mod:`.batch`)."""
