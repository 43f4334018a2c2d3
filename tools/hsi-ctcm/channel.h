// tools/hsi-ctcm/channel.h: the channel program of hsi-ctcm: one CTC
// device carrying IP packets both ways between the TUN device and the
// other LPAR.
//
// Two threads. The program's main thread reads packets from the TUN device
// and Offer()s them; the channel's own thread is the only one that calls
// the CtcDevice (its calls are for one thread at a time): it packs what is
// queued into one block (block.h) per write, takes the other end's writes
// and hands their packets to the TUN device. Offer() Interrupt()s the
// channel thread's wait for the other end only while it waits, so a write
// is never cut short but by Stop().
//
// A CTC carries one write at a time, in either direction, and a write
// lasts until the other end took it. So that the two ends keep off each
// other's writes (docs/ctc.md, "IP over CTC"):
//   1. An end with a block to send first takes the other end's pending
//      write, then starts its own only if the device is still idle
//      (CtcDevice::WriteIfIdle): a collision is left only when both start
//      in the same instant.
//   2. After a collision (both writes failed, each end slept the device's
//      recovery delay), the end of the LPAR whose name sorts first redrives
//      at once; the other waits up to one more recovery delay for that
//      write, takes it, and only then redrives its own. No randomness, and
//      two redrives never meet again.
// Linux's ctcm keeps off collisions by another road: it groups two
// subchannels, one it only reads and one it only writes. hsi-ctcm does
// that with two Channels (--ctc READ,WRITE): it Offer()s packets to the
// write device's only, and the read device's only delivers.
//
// A write the other end does not take within `write_timeout` is withdrawn
// and its packets dropped (counted; IP tolerates loss, TCP resends). A
// block from the other end that breaks the format is dropped whole and
// counted, never half delivered. When the device goes down (the other end
// closed it or died, or its half broke the device's rules), the channel
// drops what is queued, closes its end and opens it again, waiting for the
// other end to come back; packets offered meanwhile are dropped (counted).
// A refusal by hsid (policy, unknown device) ends the channel: failure().
// `carrier` is told each change: false once the device went down (what
// was queued is dropped), true once it is open again to the other end
// (packets offered from then on are queued).
//
// Thread safety: Start, Offer, failure and Stop from one thread (the
// main thread); counters() after Stop().
#ifndef HSI_TOOLS_HSI_CTCM_CHANNEL_H_
#define HSI_TOOLS_HSI_CTCM_CHANNEL_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "block.h"
#include "hsi/ctc.h"
#include "hsi/ctc_host.h"
#include "hsi/fd.h"
#include "hsi/isfc_convention.h"

namespace hsi::ctcm {

struct ChannelOptions {
  CtcHost* host = nullptr;  // opened the device; outlives the channel
  DeviceNumber device;      // this LPAR's device number
  int tun_fd = -1;          // where received packets go (write())
  uint32_t block_size = 0;  // the device's
  size_t queue_bytes = 0;   // bytes of packets queued before Offer() says "full"
  absl::Duration write_timeout = absl::Seconds(2);
  // Called on the channel thread when the channel goes down (false) and
  // when it is up again (true); may be empty.
  std::function<void(bool up)> carrier;
};

struct ChannelCounters {
  // To the other LPAR: packets and bytes delivered, in blocks (writes the
  // other end took), the most packets one block carried, collisions.
  uint64_t tx_packets = 0, tx_bytes = 0, tx_blocks = 0, tx_max_batch = 0, collisions = 0;
  // Dropped: packets in writes not taken in time (tx_timeout, counted in
  // packets) or cut off by the device going down (tx_channel_down), offered
  // while no channel was up (tx_no_channel).
  uint64_t tx_timeout = 0, tx_channel_down = 0, tx_no_channel = 0;
  // From the other LPAR: packets and bytes handed to the device, blocks
  // taken; dropped: blocks that broke the format (rx_bad_block), packets
  // the device refused (rx_device_error).
  uint64_t rx_packets = 0, rx_bytes = 0, rx_blocks = 0, rx_bad_block = 0, rx_device_error = 0;
  uint64_t channel_downs = 0;  // the device went down (and was opened again)
};

class Channel {
 public:
  // `device`: the device, open already, or null (the channel opens it,
  // waiting for the other end). Does not start the thread.
  Channel(ChannelOptions options, std::shared_ptr<CtcDevice> device);
  ~Channel();  // Stop()
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // Starts the channel thread. Returns an error if the eventfd cannot be
  // made.
  absl::Status Start();

  // Queues `packets` (IP packets, each at most the device's largest;
  // moved from) for the other LPAR, or drops them, counted, while no
  // channel is up. Returns whether there is room for more: when false,
  // the caller stops offering until wake_fd() is readable.
  bool Offer(std::vector<std::vector<uint8_t>>* packets);
  // Readable (an eventfd; read it to reset) when the queue has room again
  // after Offer() said false, or when the channel failed.
  int wake_fd() const { return wake_.get(); }
  // OK while the channel runs; why it ended (hsid refused to open the
  // device again) otherwise.
  absl::Status failure() const;
  // Stops the thread (a write in progress is cut short) and joins it.
  void Stop();
  // The counters; after Stop().
  const ChannelCounters& counters() const { return c_; }

 private:
  void Run();
  // One block from the other end: checked, then its packets to the device.
  void Deliver(const std::vector<uint8_t>& block, const std::string& from);
  // The device went down for `why`: drop, close, open again (until up,
  // stopped or refused).
  void Reopen(const absl::Status& why);
  void Wake();

  const ChannelOptions o_;
  const uint32_t max_packet_;
  UniqueFd wake_;
  std::thread thread_;
  ChannelCounters c_;  // the channel thread's, but tx_no_channel (under mu_)
  std::vector<BlockPacket> packets_;  // Deliver's, the channel thread's

  mutable std::mutex mu_;
  std::shared_ptr<CtcDevice> device_ ABSL_GUARDED_BY(mu_);
  std::deque<std::vector<uint8_t>> queue_ ABSL_GUARDED_BY(mu_);
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool waiting_ ABSL_GUARDED_BY(mu_) = false;   // the thread waits for the other end's write
  bool full_ ABSL_GUARDED_BY(mu_) = false;      // Offer() said "no room"
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  uint64_t tx_no_channel_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace hsi::ctcm

#endif  // HSI_TOOLS_HSI_CTCM_CHANNEL_H_
