# examples/examples.mk - `make demo`, included by the top-level Makefile.
#
# Installs this build into a staging prefix and builds the example with
# the installed qrpcgen and pkg-config file, as a user would, then runs it.

STAGE := $(abspath $(BUILD))/stage

demo: all
	@$(MAKE) --no-print-directory install PREFIX=$(STAGE) DESTDIR= >/dev/null
	@echo "== building examples/calc against the qrpc installed in $(STAGE)"
	PATH="$(STAGE)/bin:$$PATH" PKG_CONFIG_PATH="$(STAGE)/lib/pkgconfig" \
	    $(MAKE) --no-print-directory -C examples/calc B=$(abspath $(BUILD))/examples/calc
	@echo "== running the calc demo"
	LD_LIBRARY_PATH="$(STAGE)/lib" $(abspath $(BUILD))/examples/calc/calc-demo
