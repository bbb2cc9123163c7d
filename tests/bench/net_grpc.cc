/*
 * net_grpc.cc - the "grpc" peer of the network workloads: gRPC C++ with the
 * code protoc and grpc_cpp_plugin generate from netbench.proto, over
 * HTTP/2 on TCP, as a C++ application of that stack would use it.  Only
 * bench_net_peers (make bench-peers) links it; it is not a test of gRPC.
 * The C driver sees it through net_grpc, a net_sys with C linkage.
 *
 * The server is a grpc::Server listening on 127.0.0.1:0 (the port it got
 * is read back from AddListeningPort) with the callback API service
 * (handlers run on gRPC's own threads); it serves until stdin, the
 * driver's lifeline, reaches end of file.  The client is one channel and
 * one stub: every workload's calls, from any thread, share its HTTP/2
 * connection, as qrpc's share its one connection.  Both sides raise the
 * message limits to NET_MAX_MESSAGE (the default 4 MiB receive limit
 * refuses the bulk calls).  Everything else is gRPC's default.
 *
 * latency, threads and bulk use the synchronous stub; pipelined uses the
 * asynchronous one on a CompletionQueue that the measuring thread drives
 * itself, starting a new call for every one that completes so that
 * `window` calls stay in flight.  mixed is not measured (NULL).
 */
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <pthread.h>
#include <unistd.h>

#include <grpcpp/grpcpp.h>

#include "bench_net.h"
extern "C" {
#include "bench_util.h"
}
#include "netbench.grpc.pb.h"
#include "netbench.pb.h"

namespace {

[[noreturn]] void gr_status_fail(const char *what, const grpc::Status &st)
{
    std::string detail = "status " + std::to_string(static_cast<int>(st.error_code())) +
                         ": " + st.error_message();

    net_fail("grpc", what, detail.c_str());
}

int32_t gr_sum(int32_t a, int32_t b)
{
    return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
}

/* ---- the server ---------------------------------------------------------------- */

class BenchService final : public nbpb::Bench::CallbackService {
    grpc::ServerUnaryReactor *Add(grpc::CallbackServerContext *ctx,
                                  const nbpb::AddRequest *req, nbpb::AddReply *rep) override
    {
        grpc::ServerUnaryReactor *r = ctx->DefaultReactor();

        rep->set_sum(gr_sum(req->a(), req->b()));
        r->Finish(grpc::Status::OK);
        return r;
    }

    grpc::ServerUnaryReactor *Sink(grpc::CallbackServerContext *ctx,
                                   const nbpb::SinkRequest *req, nbpb::SinkReply *rep) override
    {
        grpc::ServerUnaryReactor *r = ctx->DefaultReactor();

        rep->set_len(static_cast<uint32_t>(req->data().size()));
        r->Finish(grpc::Status::OK);
        return r;
    }
};

int gr_serve()
{
    BenchService service;
    grpc::ServerBuilder builder;
    int port = 0;

    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.SetMaxReceiveMessageSize(static_cast<int>(NET_MAX_MESSAGE));
    builder.SetMaxSendMessageSize(static_cast<int>(NET_MAX_MESSAGE));
    builder.RegisterService(&service);
    std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
    if (!server || port <= 0)
        net_fail("grpc", "server", "cannot listen on 127.0.0.1:0");
    std::printf("127.0.0.1:%d\n", port);
    std::fflush(stdout);
    /* Until the driver goes away (or closes our stdin). */
    for (;;) {
        char c;
        ssize_t r = read(0, &c, 1);

        if (r > 0 || (r < 0 && errno == EINTR))
            continue;
        break;
    }
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server->Wait();
    return 0;
}

/* ---- the client ---------------------------------------------------------------- */

std::shared_ptr<grpc::Channel> gr_channel;
std::unique_ptr<nbpb::Bench::Stub> gr_stub;

void gr_add(int32_t a, int32_t b)
{
    grpc::ClientContext ctx;
    nbpb::AddRequest req;
    nbpb::AddReply rep;

    req.set_a(a);
    req.set_b(b);
    grpc::Status st = gr_stub->Add(&ctx, req, &rep);
    if (!st.ok())
        gr_status_fail("add", st);
    if (rep.sum() != gr_sum(a, b))
        net_fail("grpc", "add", "wrong sum");
}

void gr_open(const char *addr)
{
    grpc::ChannelArguments args;
    std::string target = std::string("ipv4:") + addr;

    args.SetMaxReceiveMessageSize(static_cast<int>(NET_MAX_MESSAGE));
    args.SetMaxSendMessageSize(static_cast<int>(NET_MAX_MESSAGE));
    gr_channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
    if (!gr_channel->WaitForConnected(std::chrono::system_clock::now() +
                                        std::chrono::seconds(10)))
        net_fail("grpc", "open", "not connected within 10 s");
    gr_stub = nbpb::Bench::NewStub(gr_channel);
    gr_add(1, 2);
}

void gr_close()
{
    gr_stub.reset();
    gr_channel.reset();
}

/* ---- latency, and threads: one sync call in flight per thread, one channel ----------------------- */

void gr_thread_call(void *, int32_t k)
{
    gr_add(k, 1);               /* every thread shares the one channel */
}

const net_caller gr_caller = { nullptr, gr_thread_call, nullptr };

void gr_latency(int n, double *us)
{
    net_run_latency(gr_thread_call, nullptr, n, us);
}

void gr_threads(int nthreads, double warm, double seconds, uint64_t *calls,
                  double *elapsed)
{
    net_run_threads("grpc", &gr_caller, nthreads, warm, seconds, calls, elapsed);
}

/* ---- pipelined: async calls on a CompletionQueue, `window` in flight ---------------- */

struct GrpcSlot {
    std::unique_ptr<grpc::ClientContext> ctx;
    nbpb::AddReply rep;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<nbpb::AddReply>> rpc;
};

void gr_pipelined(int window, double warm, double seconds, uint64_t *calls,
                    double *elapsed)
{
    grpc::CompletionQueue cq;
    std::vector<GrpcSlot> slots(static_cast<size_t>(window));
    nbpb::AddRequest req;
    enum { WARM, MEASURE, DRAIN } phase = WARM;
    uint64_t done = 0, c0 = 0;
    int inflight = 0;
    double start = bench_now(), t0 = start;
    void *tag;
    bool ok;

    req.set_a(1);
    req.set_b(2);
    auto issue = [&](GrpcSlot &s) {
        s.ctx = std::make_unique<grpc::ClientContext>();
        s.rpc = gr_stub->AsyncAdd(s.ctx.get(), req, &cq);
        s.rpc->Finish(&s.rep, &s.status, &s);
        inflight++;
    };
    for (GrpcSlot &s : slots)
        issue(s);
    /* a completion starts the next call until the time is up, then drains */
    while (inflight > 0) {
        if (!cq.Next(&tag, &ok))
            net_fail("grpc", "pipelined", "the completion queue shut down");
        GrpcSlot *s = static_cast<GrpcSlot *>(tag);

        inflight--;
        if (!ok)
            net_fail("grpc", "pipelined", "a call did not complete");
        if (!s->status.ok())
            gr_status_fail("pipelined add", s->status);
        if (s->rep.sum() != 3)
            net_fail("grpc", "pipelined", "wrong sum");
        done++;
        if (phase == DRAIN)
            continue;
        double t = bench_now();

        if (phase == WARM && t - start >= warm) {
            phase = MEASURE;
            c0 = done;
            t0 = t;
        } else if (phase == MEASURE && t - t0 >= seconds) {
            phase = DRAIN;
            *calls = done - c0;
            *elapsed = t - t0;
            continue;
        }
        issue(*s);
    }
    cq.Shutdown();
    while (cq.Next(&tag, &ok))
        ;
}

/* ---- bulk: size bytes out, a fixed32 back ------------------------------------------ */

void gr_bulk_call(const nbpb::SinkRequest &req, size_t size)
{
    grpc::ClientContext ctx;
    nbpb::SinkReply rep;
    grpc::Status st = gr_stub->Sink(&ctx, req, &rep);

    if (!st.ok())
        gr_status_fail("sink", st);
    if (rep.len() != size)
        net_fail("grpc", "sink", "wrong length");
}

void gr_bulk(size_t size, int min_calls, double seconds, uint64_t *calls, double *elapsed)
{
    nbpb::SinkRequest req;
    std::string *data = req.mutable_data();
    uint64_t n = 0;
    double t0, t;

    data->resize(size);
    for (size_t i = 0; i < size; i++)
        (*data)[i] = static_cast<char>(static_cast<uint8_t>(i * 131u));
    gr_bulk_call(req, size);          /* warm-up */
    t0 = bench_now();
    do {
        gr_bulk_call(req, size);
        n++;
        t = bench_now();
    } while (t - t0 < seconds || n < static_cast<uint64_t>(min_calls));
    *calls = n;
    *elapsed = t - t0;
}

} // namespace

extern "C" const net_sys net_grpc = {
    "grpc",
    gr_serve,
    gr_open,
    gr_close,
    gr_latency,
    gr_threads,
    gr_pipelined,
    gr_bulk,
    nullptr,                            /* mixed: not measured */
    nullptr,                            /* no idempotent methods: no dedup workload */
};
