"""The otahub agent: the device side of an update, for every dialect."""
