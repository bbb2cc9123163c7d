# tests/fuzz/fuzz.mk - `make fuzz`: the libFuzzer harnesses, included by the
# top-level Makefile.
#
#   make fuzz [FUZZ_SECONDS=60]
#
# Builds, with clang's libFuzzer, AddressSanitizer and UBSan, into
# $(BUILD)/fuzz/:
#   fuzz_qidl    qrpcgen's front end and back ends (fuzz_qidl.c)
#   fuzz_decode  the generated decoders of tests/idl's common, bank and
#                kitchen (fuzz_decode.c)
#   fuzz_frame   the runtime's frame reader (fuzz_frame.c)
# then runs each for FUZZ_SECONDS on a fresh copy of its seed corpus
# (tests/fuzz/run.sh) and fails if either finds a crash, a leak or a
# timeout; the reproducer lands in $(BUILD)/fuzz/artifacts/.  Every object
# is compiled again here with the fuzzing flags; nothing is shared with
# the normal build but qrpcgen (which generates fuzz_decode's code) and the
# flex and bison output.

FUZZ_CC       ?= clang
FUZZ_SECONDS  ?= 60
FUZZ_DIR      := $(BUILD)/fuzz
FUZZ_GEN      := $(FUZZ_DIR)/gen
FUZZ_OBJ      := $(FUZZ_DIR)/obj
FUZZ_SAN      := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS   := $(CSTD) -g -O1 -fno-omit-frame-pointer $(FUZZ_SAN) -MMD -MP
FUZZ_DECODE_IDL ?= common bank kitchen

# ---- fuzz_qidl -----------------------------------------------------------------

# The compiler but main.o.  Its calls that open files are renamed to
# fuzz_qidl_*, which fuzz_qidl.c defines to keep the loader inside the
# fuzzing directory; open64, openat and fopen64 have no such function, so
# a compiler that starts using them fails to link here instead of silently
# escaping.
FUZZ_COMPILER_OBJ := $(patsubst $(BUILD)/obj/%,$(FUZZ_OBJ)/%,\
                       $(filter-out %/main.o,$(COMPILER_OBJ)))
FUZZ_CONFINE  := open open64 openat fopen fopen64 access realpath
FUZZ_REDEFINE := $(foreach s,$(FUZZ_CONFINE),--redefine-sym $(s)=fuzz_qidl_$(s))

$(FUZZ_OBJ)/compiler/%.o: compiler/%.c $(BUILD)/gen/compiler/parser.h $(BUILD)/gen/compiler/lexer.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(WARN) -Icompiler -I$(BUILD)/gen/compiler \
	    -DQRPC_VERSION='"$(VERSION)"' -c -o $@ $<
	objcopy $(FUZZ_REDEFINE) $@

# flex's and bison's skeletons get the normal build's exemptions.
$(FUZZ_OBJ)/gen/compiler/%.o: $(BUILD)/gen/compiler/%.c $(BUILD)/gen/compiler/parser.h $(BUILD)/gen/compiler/lexer.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Wall -Wextra -Werror -Wno-unused-function \
	    -Wno-sign-compare -Wno-unused-parameter -Icompiler -I$(BUILD)/gen/compiler -c -o $@ $<
	objcopy $(FUZZ_REDEFINE) $@

# The files inputs can import, embedded into the harness.
FUZZ_EMBEDDED := $(wildcard tests/idl/*.qidl tests/qidl-good/inc/*.qidl \
                            tests/qidl-bad/inc/*.qidl)

$(FUZZ_GEN)/fuzz_files.c: tests/fuzz/embed.awk $(FUZZ_EMBEDDED)
	@mkdir -p $(dir $@)
	awk -f tests/fuzz/embed.awk $(FUZZ_EMBEDDED) > $@.tmp && mv $@.tmp $@

$(FUZZ_OBJ)/harness/fuzz_files.o: $(FUZZ_GEN)/fuzz_files.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Wall -Wextra -Werror -Itests/fuzz -c -o $@ $<

$(FUZZ_OBJ)/harness/fuzz_qidl.o: tests/fuzz/fuzz_qidl.c $(BUILD)/gen/compiler/parser.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(WARN) -Icompiler -Itests/fuzz -c -o $@ $<

$(FUZZ_DIR)/fuzz_qidl: $(FUZZ_OBJ)/harness/fuzz_qidl.o $(FUZZ_OBJ)/harness/fuzz_files.o \
                       $(FUZZ_COMPILER_OBJ)
	$(FUZZ_CC) $(FUZZ_SAN) -o $@ $^

# ---- fuzz_decode ---------------------------------------------------------------

# The generated code, one qrpcgen run per file as tests.mk does it.
$(FUZZ_GEN)/%.stamp: tests/idl/%.qidl $(QRPCGEN)
	@mkdir -p $(FUZZ_GEN)
	$(QRPCGEN) -I tests/idl -o $(FUZZ_GEN) -M $(FUZZ_GEN)/$*.qd --header --types --random $<
	@touch $@

FUZZ_STAMPS := $(FUZZ_DECODE_IDL:%=$(FUZZ_GEN)/%.stamp)
FUZZ_GEN_C  := $(foreach f,$(FUZZ_DECODE_IDL),$(FUZZ_GEN)/$(f)_types.c $(FUZZ_GEN)/$(f)_random.c)
FUZZ_GEN_OBJ := $(FUZZ_GEN_C:$(FUZZ_GEN)/%.c=$(FUZZ_OBJ)/idl/%.o)
# The runtime, with the master's generated interface that it holds (Makefile).
FUZZ_RUNTIME_OBJ := $(RUNTIME_SRC:%.c=$(FUZZ_OBJ)/%.o) \
                    $(IDL_GEN_C:$(IDL_GENDIR)/%.c=$(FUZZ_OBJ)/gen/idl/%.o)

$(FUZZ_GEN_C) $(FUZZ_DECODE_IDL:%=$(FUZZ_GEN)/%.h): $(FUZZ_STAMPS) ;

# The type table and its headers (fuzz_types.h names the pair).
$(FUZZ_GEN)/fuzz_types.h: tests/fuzz/types.awk $(FUZZ_STAMPS)
	awk -v includes=1 -f tests/fuzz/types.awk $(FUZZ_DECODE_IDL:%=$(FUZZ_GEN)/%.h) \
	    > $(FUZZ_GEN)/fuzz_includes.h
	awk -f tests/fuzz/types.awk $(FUZZ_DECODE_IDL:%=$(FUZZ_GEN)/%.h) > $@.tmp && mv $@.tmp $@

$(FUZZ_OBJ)/idl/%.o: $(FUZZ_GEN)/%.c $(FUZZ_STAMPS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(GENERATED_STRICT) $(RUNTIME_INC) -I$(FUZZ_GEN) -c -o $@ $<

$(FUZZ_OBJ)/runtime/%.o: runtime/%.c | $(IDL_GENDIR)/master.stamp
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(WARN) $(RUNTIME_INC) -Iruntime/src -I$(IDL_GENDIR) -c -o $@ $<

$(FUZZ_OBJ)/gen/idl/%.o: $(IDL_GENDIR)/%.c $(IDL_GENDIR)/master.stamp
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(GENERATED_STRICT) $(RUNTIME_INC) -I$(IDL_GENDIR) -c -o $@ $<

$(FUZZ_OBJ)/harness/fuzz_decode.o: tests/fuzz/fuzz_decode.c $(FUZZ_GEN)/fuzz_types.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(WARN) $(RUNTIME_INC) -I$(FUZZ_GEN) -Itests/fuzz -c -o $@ $<

$(FUZZ_DIR)/fuzz_decode: $(FUZZ_OBJ)/harness/fuzz_decode.o $(FUZZ_GEN_OBJ) $(FUZZ_RUNTIME_OBJ)
	$(FUZZ_CC) $(FUZZ_SAN) -o $@ $^ $(RUNTIME_LIBS)

# The seed generator is an ordinary program of the normal build's flavour.
$(FUZZ_DIR)/fuzz_seeds: tests/fuzz/fuzz_seeds.c $(FUZZ_GEN)/fuzz_types.h $(FUZZ_GEN_C) $(LIBQRPC_A)
	$(CC) $(CSTD) $(OPT) $(WARN) $(SANFLAGS) $(RUNTIME_INC) -I$(FUZZ_GEN) -Itests/fuzz \
	    -o $@ tests/fuzz/fuzz_seeds.c $(FUZZ_GEN_C) $(LDFLAGS_ALL) $(LIBQRPC_A) $(RUNTIME_LIBS)

# ---- fuzz_frame ----------------------------------------------------------------
# The runtime's frame reader, the code that reads every byte a peer sends.

$(FUZZ_OBJ)/harness/fuzz_frame.o: tests/fuzz/fuzz_frame.c runtime/src/frame.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(WARN) $(RUNTIME_INC) -Iruntime/src -c -o $@ $<

$(FUZZ_DIR)/fuzz_frame: $(FUZZ_OBJ)/harness/fuzz_frame.o $(FUZZ_RUNTIME_OBJ)
	$(FUZZ_CC) $(FUZZ_SAN) -o $@ $^ $(RUNTIME_LIBS)

# ---- seed corpora --------------------------------------------------------------

# Named DIR-FILE after their directory, so that equal names cannot clash.
FUZZ_QIDL_SEEDS := $(wildcard tests/idl/*.qidl tests/qidl-good/*.qidl tests/qidl-bad/*.qidl)

# The directories are prerequisites too: adding or removing a case changes
# their time.
$(FUZZ_DIR)/seeds/qidl.stamp: $(FUZZ_QIDL_SEEDS) \
                              $(wildcard tests/idl tests/qidl-good tests/qidl-bad)
	rm -rf $(FUZZ_DIR)/seeds/qidl && mkdir -p $(FUZZ_DIR)/seeds/qidl
	@for f in $(FUZZ_QIDL_SEEDS); do d=$${f%/*}; \
	    cp $$f $(FUZZ_DIR)/seeds/qidl/$${d##*/}-$${f##*/} || exit 1; done
	@touch $@

$(FUZZ_DIR)/seeds/frame.stamp: $(wildcard tests/fuzz/seeds/frame/*) tests/fuzz/seeds/frame
	rm -rf $(FUZZ_DIR)/seeds/frame && mkdir -p $(FUZZ_DIR)/seeds
	cp -R tests/fuzz/seeds/frame $(FUZZ_DIR)/seeds/frame
	@touch $@

$(FUZZ_DIR)/seeds/decode.stamp: $(FUZZ_DIR)/fuzz_seeds
	rm -rf $(FUZZ_DIR)/seeds/decode && mkdir -p $(FUZZ_DIR)/seeds/decode
	$(FUZZ_DIR)/fuzz_seeds $(FUZZ_DIR)/seeds/decode
	@touch $@

# ---- running -------------------------------------------------------------------

# Both harnesses run even if the first finds something; either failing fails.
# fuzz_qidl's stderr is closed (-close_fd_mask=2) because the compiler's
# diagnostics would drown libFuzzer's; sanitizer reports still appear.
fuzz: deps $(FUZZ_DIR)/fuzz_qidl $(FUZZ_DIR)/fuzz_decode $(FUZZ_DIR)/fuzz_frame \
      $(FUZZ_DIR)/seeds/qidl.stamp $(FUZZ_DIR)/seeds/decode.stamp \
      $(FUZZ_DIR)/seeds/frame.stamp
	@status=0; \
	tests/fuzz/run.sh $(FUZZ_DIR) fuzz_qidl $(FUZZ_SECONDS) \
	    -dict=tests/fuzz/qidl.dict -close_fd_mask=2 || status=1; \
	tests/fuzz/run.sh $(FUZZ_DIR) fuzz_decode $(FUZZ_SECONDS) || status=1; \
	tests/fuzz/run.sh $(FUZZ_DIR) fuzz_frame $(FUZZ_SECONDS) || status=1; \
	if [ $$status = 0 ]; then echo "make fuzz: no crash, leak or timeout found"; \
	else echo "make fuzz: FAILED: see the reproducers above"; exit 1; fi

-include $(wildcard $(FUZZ_GEN)/*.qd)
-include $(shell find $(FUZZ_OBJ) -name '*.d' 2>/dev/null)
