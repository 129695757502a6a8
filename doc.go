// Package weir is the weir SDK: a producer that never drops an event
// silently, and a processor that spreads a topic's partitions across a fleet
// of instances with fenced checkpoints.
//
// Both are built on franz-go's kgo client and work unchanged against a weir
// broker, any Kafka cluster, and Azure Event Hubs' Kafka endpoint. Point them
// at brokers with [Brokers], or at an Event Hubs namespace with
// [ConnectionString].
package weir
