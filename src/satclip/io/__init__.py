"""Model I/O: sources (:mod:`.resolve`), the native layout (:mod:`.parts`, :mod:`.native`), reading any
file (:mod:`.read`), the original ``.ckpt`` (:mod:`.original`), bases across readers (:mod:`.basis`), peer
formats (:mod:`.peers`) and writing for a reader (:mod:`.targets`)."""

#: readers :func:`satclip.io.convert.convert` writes for (torch-free here, for the CLI's parser)
TARGETS = ("native", "original", "torchgeo", "rshf")
