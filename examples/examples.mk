# examples/examples.mk - `make demo`, included by the top-level Makefile.
#
# Installs this build into a staging prefix and builds the examples with
# the installed qrpcgen and pkg-config file, as a user would, then runs
# calc in one process (calc-demo: an embedded master, two server nodes and
# a client bound by name) and across processes (examples/demo.sh:
# calc-server and calc-client on 127.0.0.1, then kv-server and kv-client).

STAGE := $(abspath $(BUILD))/stage
EXAMPLES_ENV = PATH="$(STAGE)/bin:$$PATH" PKG_CONFIG_PATH="$(STAGE)/lib/pkgconfig"

demo: all
	@$(MAKE) --no-print-directory install PREFIX=$(STAGE) DESTDIR= >/dev/null
	@echo "== building examples/calc and examples/kv against the qrpc installed in $(STAGE)"
	$(EXAMPLES_ENV) $(MAKE) --no-print-directory -C examples/calc B=$(abspath $(BUILD))/examples/calc
	$(EXAMPLES_ENV) $(MAKE) --no-print-directory -C examples/kv B=$(abspath $(BUILD))/examples/kv
	@echo "== running the calc demo (one process: an embedded master, two server nodes, a client bound by name)"
	LD_LIBRARY_PATH="$(STAGE)/lib" $(abspath $(BUILD))/examples/calc/calc-demo
	@echo "== running calc and kv across processes"
	LD_LIBRARY_PATH="$(STAGE)/lib" sh examples/demo.sh $(abspath $(BUILD))/examples/calc \
	    $(abspath $(BUILD))/examples/kv
