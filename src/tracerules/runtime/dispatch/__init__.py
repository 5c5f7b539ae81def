"""Running planned actions: the dispatcher, its workers per destination, and the retry policy."""
