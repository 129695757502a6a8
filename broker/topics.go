package broker

import (
	"errors"
	"github.com/weirhq/weir/internal/topicname"

	"github.com/weirhq/weir/storage"
)

// topic returns the named topic, creating it with DefaultPartitions when it
// is unknown, create is true and auto-creation is enabled.
func (b *Broker) topic(name string, create bool) (*storage.Topic, error) {
	if t, ok := b.log.Topic(name); ok {
		return t, nil
	}
	if !topicname.Valid(name) {
		return nil, storage.ErrInvalidTopic
	}
	if !create || b.cfg.DisableAutoCreateTopics {
		return nil, storage.ErrUnknownTopic
	}
	t, err := b.log.CreateTopic(name, b.cfg.DefaultPartitions, nil)
	if errors.Is(err, storage.ErrTopicExists) { // lost a race with another request
		if t, ok := b.log.Topic(name); ok {
			return t, nil
		}
		return nil, storage.ErrUnknownTopic
	}
	if err != nil {
		return nil, err
	}
	b.logger.Info("weir: auto-created topic", "topic", name, "partitions", b.cfg.DefaultPartitions)
	return t, nil
}

// partition returns partition i of a topic that exists.
func (b *Broker) partition(name string, i int32) (*storage.Partition, error) {
	t, ok := b.log.Topic(name)
	if !ok {
		return nil, storage.ErrUnknownTopic
	}
	p, ok := t.Partition(i)
	if !ok {
		return nil, storage.ErrUnknownPartition
	}
	return p, nil
}

// topicByID finds a topic by its UUID.
func (b *Broker) topicByID(id [16]byte) (*storage.Topic, bool) {
	if id == ([16]byte{}) {
		return nil, false
	}
	for _, t := range b.log.Topics() {
		if t.ID() == id {
			return t, true
		}
	}
	return nil, false
}

// replicas is the replica (and ISR) list of every partition: this node.
func (b *Broker) replicas() []int32 { return []int32{b.cfg.NodeID} }
