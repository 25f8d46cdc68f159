// The gauges read from the database (pending requests by stage, active
// grants, the outbox, the sweep's lag), refreshed when metrics are scraped.
#ifndef LOCKBOX_SERVER_APP_OPERATIONAL_GAUGES_H_
#define LOCKBOX_SERVER_APP_OPERATIONAL_GAUGES_H_

#include "server/domain/clock.h"
#include "server/store/store.h"

namespace lockbox {

// Reads one snapshot and sets the gauges of Metrics::Get(). On a database
// error the last values stay and the scrape-error gauge says so.
// Thread-safe.
void RefreshDatabaseGauges(Store& store, const Clock& clock);

}  // namespace lockbox

#endif  // LOCKBOX_SERVER_APP_OPERATIONAL_GAUGES_H_
