"""The output folder: atomic files, and the whole analysis built aside and swapped in."""
