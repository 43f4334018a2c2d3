// isfc_links.cc: an LPAR process's ISFC links driven by commands (hsi/isfc.h).
#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "hsi/isfc.h"

namespace hsi {

IsfcLinks::~IsfcLinks() {
  if (taking_) (void)host_->StopIsfcCommands();  // no Handle() after this
  std::lock_guard<std::mutex> l(mu_);
  links_.clear();  // deactivates; the devices close with the host
}

absl::Status IsfcLinks::TakeCommands() {
  absl::Status s = host_->AcceptIsfcCommands([this](const IsfcCommand& c) { return Handle(c); });
  if (s.ok()) taking_ = true;
  return s;
}

IsfcLink* IsfcLinks::link(const std::string& peer) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = links_.find(peer);
  return it == links_.end() ? nullptr : it->second.get();
}

absl::StatusOr<std::vector<std::shared_ptr<CtcDevice>>> IsfcLinks::OpenAll(const IsfcCommand& c) {
  // Open all at once: each waits for the peer's end, which the peer may
  // open in any order.
  const absl::Time deadline = absl::Now() + c.timeout;
  std::vector<std::thread> openers;
  std::vector<absl::StatusOr<std::shared_ptr<CtcDevice>>> got(c.devices.size(), absl::UnknownError("not opened"));
  for (size_t i = 0; i < c.devices.size(); ++i) {
    openers.emplace_back([&, i] { got[i] = host_->Open(c.devices[i], deadline); });
  }
  for (std::thread& t : openers) t.join();
  std::vector<std::shared_ptr<CtcDevice>> out;
  absl::Status first;
  std::vector<DeviceNumber> opened;
  for (size_t i = 0; i < got.size(); ++i) {
    if (got[i].ok()) {
      out.push_back(*got[i]);
      opened.push_back(c.devices[i]);
    } else if (first.ok()) {
      first = got[i].status();
    }
  }
  if (!first.ok()) {
    CloseAll(opened);
    return first;
  }
  return out;
}

void IsfcLinks::CloseAll(const std::vector<DeviceNumber>& devices) {
  for (DeviceNumber d : devices) (void)host_->Close(d);  // kNotFound: gone already
}

absl::Status IsfcLinks::Handle(const IsfcCommand& c) {
  std::lock_guard<std::mutex> l(mu_);
  const std::string where = absl::StrCat("ISFC link ", self_, "<->", c.peer);
  auto it = links_.find(c.peer);
  switch (c.op) {
    case IsfcCommandOp::kActivate: {
      if (it != links_.end()) return absl::AlreadyExistsError(absl::StrCat(where, " is active already"));
      absl::StatusOr<std::vector<std::shared_ptr<CtcDevice>>> devs = OpenAll(c);
      if (!devs.ok()) return devs.status();
      absl::StatusOr<std::unique_ptr<IsfcLink>> link =
          IsfcLink::Activate({.self = self_, .peer = c.peer, .mode = c.mode, .host = host_}, *devs);
      if (!link.ok()) {
        CloseAll(c.devices);
        return link.status();
      }
      links_[c.peer] = std::move(*link);
      devices_[c.peer] = c.devices;
      return absl::OkStatus();
    }
    case IsfcCommandOp::kDeactivate: {
      if (it == links_.end()) return absl::NotFoundError(absl::StrCat(where, " is not active"));
      links_.erase(it);  // stops its threads and withdraws the declaration
      CloseAll(devices_[c.peer]);
      devices_.erase(c.peer);
      return absl::OkStatus();
    }
    case IsfcCommandOp::kAddDevices: {
      if (it == links_.end()) return absl::NotFoundError(absl::StrCat(where, " is not active"));
      absl::StatusOr<std::vector<std::shared_ptr<CtcDevice>>> devs = OpenAll(c);
      if (!devs.ok()) return devs.status();
      for (size_t i = 0; i < devs->size(); ++i) {
        if (absl::Status s = it->second->AddDevice((*devs)[i]); !s.ok()) {
          for (size_t k = 0; k < i; ++k) (void)it->second->RemoveDevice(c.devices[k]);
          CloseAll(c.devices);
          return s;
        }
        devices_[c.peer].push_back(c.devices[i]);
      }
      return absl::OkStatus();
    }
    case IsfcCommandOp::kRemoveDevices: {
      if (it == links_.end()) return absl::NotFoundError(absl::StrCat(where, " is not active"));
      std::vector<DeviceNumber>& mine = devices_[c.peer];
      for (DeviceNumber d : c.devices) {
        if (std::find(mine.begin(), mine.end(), d) == mine.end()) {
          return absl::NotFoundError(absl::StrCat(where, ": device ", d.ToString(), " is not in it"));
        }
      }
      for (DeviceNumber d : c.devices) {
        if (absl::Status s = it->second->RemoveDevice(d); !s.ok()) return s;
        (void)host_->Close(d);
        mine.erase(std::find(mine.begin(), mine.end(), d));
      }
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(where, ": unknown command ", static_cast<uint32_t>(c.op)));
}

}  // namespace hsi
