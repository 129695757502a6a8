package weir_test

func runChildInstance() bool { return false }
