"""Reading users' inputs (sequences, images, tables) and writing outputs atomically."""
