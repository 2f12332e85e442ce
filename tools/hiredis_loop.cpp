#include "hiredis_loop.hpp"

#include <memory>

namespace ws6455::tools {

namespace {

// What hiredis' hooks act on. The watch's callback holds a reference, so a context
// freed inside redisAsyncHandleRead (a disconnect) leaves this alive until the
// callback has returned.
struct hiredis_events {
  redisAsyncContext* ac;
  io::endpoint* ep;
  io::endpoint::watch_id watch = 0;
  unsigned wanted = 0;

  void want(unsigned events) {
    if (events == wanted || !ac) return;
    wanted = events;
    (void)ep->rewatch(watch, wanted);
  }
};

hiredis_events& of(void* p) { return *static_cast<std::shared_ptr<hiredis_events>*>(p)->get(); }

void add_read(void* p) { of(p).want(of(p).wanted | io::readable); }
void del_read(void* p) { of(p).want(of(p).wanted & ~io::readable); }
void add_write(void* p) { of(p).want(of(p).wanted | io::writable); }
void del_write(void* p) { of(p).want(of(p).wanted & ~io::writable); }

void cleanup(void* p) {
  auto* holder = static_cast<std::shared_ptr<hiredis_events>*>(p);
  hiredis_events& e = **holder;
  e.ac = nullptr;            // a callback running now must not touch the context again
  e.ep->unwatch(e.watch);    // before hiredis closes the descriptor
  delete holder;
}

}  // namespace

int attach_hiredis(redisAsyncContext* ac, io::endpoint& ep, unsigned loop) {
  if (ac->ev.data != nullptr) return REDIS_ERR;  // attached already
  auto e = std::make_shared<hiredis_events>(hiredis_events{ac, &ep});
  // Read and write from the start: the non-blocking connect completes as writable.
  e->wanted = io::readable | io::writable;
  e->watch = ep.watch(loop, ac->c.fd, e->wanted, [e](unsigned ready) {
    if ((ready & io::readable) && e->ac) redisAsyncHandleRead(e->ac);
    if ((ready & io::writable) && e->ac) redisAsyncHandleWrite(e->ac);
  });
  if (e->watch == 0) return REDIS_ERR;
  ac->ev.addRead = add_read;
  ac->ev.delRead = del_read;
  ac->ev.addWrite = add_write;
  ac->ev.delWrite = del_write;
  ac->ev.cleanup = cleanup;
  ac->ev.data = new std::shared_ptr<hiredis_events>(e);
  return REDIS_OK;
}

}  // namespace ws6455::tools
