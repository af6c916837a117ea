"""Store-free, typed membership-inference auditing of any Keras model: signals -> attacks -> metrics -> results."""
